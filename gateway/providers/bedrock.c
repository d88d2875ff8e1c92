/* bedrock: Amazon Bedrock's Converse and ConverseStream APIs
 * (POST {base}/model/{modelId}/converse[-stream]), signed with AWS SigV4.
 *
 * Converse is Bedrock's one format for every model family: alternating
 * user/assistant messages of content blocks (text, image, toolUse,
 * toolResult), system blocks, inferenceConfig and toolConfig. The stream is
 * binary application/vnd.amazon.eventstream frames (eventstream.c) whose
 * JSON payloads are messageStart, contentBlock{Start,Delta,Stop},
 * messageStop and metadata (usage), or an exception.
 */
#include "provider.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config.h"
#include "embed.h"
#include "eventstream.h"
#include "sigv4.h"

#define RESPONSE_LIMITS { .max_depth = 64, .max_bytes = 0 }
#define MAX_MESSAGE (1u << 20)
#define MAX_BLOCKS 1024

static int prepare(gw_deployment *d, char *err, size_t errlen)
{
    if (!d->region || !*d->region) { snprintf(err, errlen, "region is required for provider bedrock"); return -1; }
    for (const char *p = d->region; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-')) {
            snprintf(err, errlen, "region must look like us-east-1");
            return -1;
        }
    if (!d->aws_access_key_id || !d->aws_secret_access_key) {
        snprintf(err, errlen, "aws_access_key_id and aws_secret_access_key are required for provider bedrock");
        return -1;
    }
    if (!d->base_url) {
        buf_t b; buf_init(&b);
        if (buf_printf(&b, "https://bedrock-runtime.%s.amazonaws.com", d->region) < 0) { buf_free(&b); snprintf(err, errlen, "out of memory"); return -1; }
        d->base_url = buf_steal(&b);
    }
    return provider_base_url(d, NULL, err, errlen);
}

static void put_str(buf_t *b, gw_str s) { buf_json_str(b, s.p ? s.p : "", s.n); }

/* "image/png" -> "png": Converse names image formats, not media types. */
static int image_format(gw_str mt, const char **fmt)
{
    static const char *const known[] = { "png", "jpeg", "gif", "webp" };
    if (mt.n < 7 || strncmp(mt.p, "image/", 6)) return -1;
    for (size_t i = 0; i < 4; i++)
        if (mt.n - 6 == strlen(known[i]) && !memcmp(mt.p + 6, known[i], mt.n - 6)) { *fmt = known[i]; return 0; }
    if (mt.n == 9 && !memcmp(mt.p, "image/jpg", 9)) { *fmt = "jpeg"; return 0; }
    return -1;
}

static int put_block(buf_t *b, const chat_req *q, const chat_part *p, int first, char *err, size_t errlen)
{
    if (p->kind == PART_TEXT && p->text.n == 0) return 0;   /* Converse refuses blank text blocks */
    const char *fmt = NULL;
    if (p->kind == PART_IMAGE && (p->url.p || image_format(p->media_type, &fmt) < 0)) {
        snprintf(err, errlen, "Bedrock takes images as base64 png, jpeg, gif or webp data, not URLs.");
        return -1;
    }
    if (!first) buf_putc(b, ',');
    switch (p->kind) {
    case PART_TEXT:
        buf_puts(b, "{\"text\":");
        put_str(b, p->text);
        buf_putc(b, '}');
        break;
    case PART_IMAGE:
        buf_puts(b, "{\"image\":{\"format\":\"");
        buf_puts(b, fmt);
        buf_puts(b, "\",\"source\":{\"bytes\":");
        put_str(b, p->data);
        buf_puts(b, "}}}");
        break;
    case PART_TOOL_CALL:
        buf_puts(b, "{\"toolUse\":{\"toolUseId\":");
        put_str(b, p->id);
        buf_puts(b, ",\"name\":");
        put_str(b, p->name);
        buf_puts(b, ",\"input\":");
        provider_put_args_object(b, p->args);
        buf_puts(b, "}}");
        break;
    case PART_TOOL_RESULT:
        buf_puts(b, "{\"toolResult\":{\"toolUseId\":");
        put_str(b, p->id);
        buf_puts(b, ",\"content\":[{\"text\":");
        put_str(b, p->text.n ? p->text : (gw_str){ "(empty)", 7 });
        buf_puts(b, p->is_error ? "}],\"status\":\"error\"}}" : "}]}}");
        break;
    }
    return 1;
}

static const provider_turn_style turns = {
    "{\"role\":\"user\",\"content\":[", "{\"role\":\"assistant\",\"content\":[", "{\"text\":\"(empty)\"}", "]}",
};

int bedrock_build_body(const chat_req *q, buf_t *b, char *err, size_t errlen)
{
    buf_reset(b);
    buf_puts(b, "{\"messages\":");
    if (provider_put_turns(b, q, &turns, put_block, err, errlen) < 0) return -1;
    if (q->system.len || q->response_format != RESPONSE_TEXT) {
        buf_t s; buf_init(&s);
        buf_append(&s, q->system.data ? q->system.data : "", q->system.len);
        if (q->response_format != RESPONSE_TEXT) {   /* Converse has no JSON mode */
            buf_puts(&s, s.len ? "\n\nRespond with a single JSON object and nothing else." : "Respond with a single JSON object and nothing else.");
            if (q->response_format == RESPONSE_JSON_SCHEMA) {
                buf_puts(&s, " It must match this JSON Schema: ");
                buf_append(&s, q->src + q->response_schema->start, q->response_schema->end - q->response_schema->start);
            }
        }
        buf_puts(b, ",\"system\":[{\"text\":");
        buf_json_str(b, s.data ? s.data : "", s.len);
        buf_puts(b, "}]");
        if (s.oom) b->oom = 1;
        buf_free(&s);
    }
    buf_puts(b, ",\"inferenceConfig\":{");
    size_t opt = b->len;
    if (q->max_tokens > 0) buf_printf(b, ",\"maxTokens\":%ld", q->max_tokens);
    if (q->has_temperature) buf_printf(b, ",\"temperature\":%.17g", q->temperature > 1 ? 1.0 : q->temperature);
    if (q->has_top_p) buf_printf(b, ",\"topP\":%.17g", q->top_p);
    if (q->nstop) {
        buf_puts(b, ",\"stopSequences\":[");
        for (size_t i = 0; i < q->nstop; i++) { if (i) buf_putc(b, ','); put_str(b, q->stop[i]); }
        buf_putc(b, ']');
    }
    if (!b->oom && b->len > opt) {   /* the first setting's leading comma */
        memmove(b->data + opt, b->data + opt + 1, b->len - opt - 1);
        b->data[--b->len] = '\0';
    }
    buf_putc(b, '}');
    if (q->has_top_k) buf_printf(b, ",\"additionalModelRequestFields\":{\"top_k\":%ld}", q->top_k);
    /* tools stay declared while the conversation holds toolUse blocks, even with tool_choice none */
    if (q->ntools) {
        buf_puts(b, ",\"toolConfig\":{\"tools\":[");
        for (size_t i = 0; i < q->ntools; i++) {
            const chat_tool *t = &q->tools[i];
            buf_puts(b, i ? ",{\"toolSpec\":{\"name\":" : "{\"toolSpec\":{\"name\":");
            put_str(b, t->name);
            if (t->description.p && t->description.n) { buf_puts(b, ",\"description\":"); put_str(b, t->description); }
            buf_puts(b, ",\"inputSchema\":{\"json\":");
            if (t->parameters) buf_append(b, t->src + t->parameters->start, t->parameters->end - t->parameters->start);
            else buf_puts(b, "{\"type\":\"object\",\"properties\":{}}");
            buf_puts(b, "}}}");
        }
        buf_putc(b, ']');
        if (q->tool_choice == TOOL_CHOICE_REQUIRED) buf_puts(b, ",\"toolChoice\":{\"any\":{}}");
        else if (q->tool_choice == TOOL_CHOICE_NAMED) {
            buf_puts(b, ",\"toolChoice\":{\"tool\":{\"name\":");
            put_str(b, q->tool_choice_name);
            buf_puts(b, "}}");
        }
        buf_putc(b, '}');
    }
    buf_putc(b, '}');
    if (b->oom) { snprintf(err, errlen, "out of memory"); return -1; }
    return 0;
}

/* Model ids hold ':' ("anthropic.claude-3-haiku-20240307-v1:0"): encode the path segment. */
static void put_path_segment(buf_t *b, const char *s)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.' || c == '~')
            buf_putc(b, (char)c);
        else buf_printf(b, "%%%02X", c);
    }
}

static int sign(const gw_deployment *d, provider_http *out, char *err, size_t errlen);

static int build_chat(const provider_call *call, provider_http *out, char *err, size_t errlen)
{
    const gw_deployment *d = call->dep;
    buf_reset(&out->url);
    buf_puts(&out->url, d->base_url);
    buf_puts(&out->url, "/model/");
    put_path_segment(&out->url, d->model);
    buf_puts(&out->url, call->chat->stream ? "/converse-stream" : "/converse");
    if (out->url.oom) { snprintf(err, errlen, "out of memory"); return -1; }
    if (bedrock_build_body(call->chat, &out->body, err, errlen) < 0) return -1;
    return sign(d, out, err, errlen);
}

/* Signs out's url and body with the deployment's credentials and sets the headers. */
static int sign(const gw_deployment *d, provider_http *out, char *err, size_t errlen)
{
    sigv4_request sq = {
        .method = "POST", .url = out->url.data, .content_type = "application/json",
        .body = out->body.data, .body_len = out->body.len, .region = d->region, .service = "bedrock",
        .access_key_id = d->aws_access_key_id, .secret_access_key = d->aws_secret_access_key,
        .session_token = d->aws_session_token, .now = time(NULL),
    };
    buf_reset(&out->hdrs);
    int n = sigv4_sign(&sq, &out->hdrs);
    if (n < 0) { snprintf(err, errlen, "could not sign the Bedrock request"); return -1; }
    int h = 0;
    out->headers[h++] = "Content-Type: application/json";
    const char *line = out->hdrs.data;   /* complete: the buffer no longer moves */
    for (int i = 0; i < n; i++, line += strlen(line) + 1) out->headers[h++] = line;
    out->headers[h] = NULL;
    return 0;
}

/* ---- answers ---- */

static chat_finish finish_of(const char *s)
{
    if (!s) return FINISH_NONE;
    if (!strcmp(s, "tool_use")) return FINISH_TOOL_CALLS;
    if (!strcmp(s, "max_tokens")) return FINISH_LENGTH;
    if (!strcmp(s, "guardrail_intervened") || !strcmp(s, "content_filtered")) return FINISH_CONTENT_FILTER;
    return FINISH_STOP;
}

static long count_of(const json_value *o, const char *k)
{
    const json_value *v = o ? json_get(o, k) : NULL;
    return v && v->type == JSON_NUMBER && v->is_int && v->i64 >= 0 && v->i64 < (1LL << 40) ? (long)v->i64 : 0;
}

/* Like Anthropic, Bedrock counts cache reads and writes apart from inputTokens. */
static void usage_of(const json_value *u, long *prompt, long *completion, long *cached)
{
    *cached = count_of(u, "cacheReadInputTokens");
    *prompt = count_of(u, "inputTokens") + *cached + count_of(u, "cacheWriteInputTokens");
    *completion = count_of(u, "outputTokens");
}

static int parse_response(const char *body, size_t len, chat_resp *r, char *err, size_t errlen)
{
    json_limits lim = RESPONSE_LIMITS;
    json_error je;
    json_doc *doc = json_parse(body, len, &lim, &je);
    if (!doc) { snprintf(err, errlen, "the provider's answer is not valid JSON (%s at byte %zu)", je.message, je.offset); return -1; }
    const json_value *root = json_root(doc), *output = json_get(root, "output");
    const json_value *msg = output ? json_get(output, "message") : NULL;
    const json_value *content = msg ? json_get(msg, "content") : NULL;
    int rc = -1;
    if (!content || content->type != JSON_ARRAY) { snprintf(err, errlen, "the provider's answer has no output.message.content"); goto out; }
    for (const json_value *b = content->first; b; b = b->next) {
        const json_value *t = json_get(b, "text"), *tu = json_get(b, "toolUse");
        if (t && t->type == JSON_STRING) {
            if (buf_append(&r->text, t->str, t->str_len) < 0) goto oom;
        } else if (tu && tu->type == JSON_OBJECT) {
            const json_value *id = json_get(tu, "toolUseId"), *name = json_get(tu, "name"), *input = json_get(tu, "input");
            if (!id || id->type != JSON_STRING || !name || name->type != JSON_STRING || !input || input->type != JSON_OBJECT) {
                snprintf(err, errlen, "the provider's answer has a malformed toolUse block");
                goto out;
            }
            if (chat_resp_add_call(r, id->str, id->str_len, name->str, name->str_len, body + input->start, input->end - input->start) < 0) {
                snprintf(err, errlen, "the provider's answer has too many tool calls");
                goto out;
            }
        }
    }
    r->finish = finish_of(json_get_str(root, "stopReason"));
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

static void error_message(const char *body, size_t len, char *msg, size_t msglen)
{
    json_limits lim = RESPONSE_LIMITS;
    json_doc *doc = json_parse(body, len, &lim, NULL);
    const json_value *root = doc ? json_root(doc) : NULL;
    const char *m = root ? json_get_str(root, "message") : NULL;
    if (!m && root) m = json_get_str(root, "Message");
    snprintf(msg, msglen, "%s", m ? m : "");
    json_doc_free(doc);
}

/* ---- streams ---- */

typedef struct br_stream {
    es_decoder   es;
    chat_emit_fn emit;
    void        *ud;
    int          failed, stopped, ntools;
    short        tool_of_block[MAX_BLOCKS];   /* contentBlockIndex -> tool call ordinal + 1 */
} br_stream;

static int block_index(const json_value *root)
{
    const json_value *i = json_get(root, "contentBlockIndex");
    return i && i->type == JSON_NUMBER && i->is_int && i->i64 >= 0 && i->i64 < MAX_BLOCKS ? (int)i->i64 : -1;
}

static void on_message(void *ud, const es_message *m)
{
    br_stream *s = ud;
    if (s->failed) return;
    json_limits lim = RESPONSE_LIMITS;
    json_doc *doc = json_parse(m->payload, m->payload_len, &lim, NULL);
    const json_value *root = doc ? json_root(doc) : NULL;
    if (!root || root->type != JSON_OBJECT) { s->failed = 1; json_doc_free(doc); return; }
    if (strcmp(m->message_type, "event")) {   /* exception or error */
        const char *msg = json_get_str(root, "message");
        if (!msg) msg = json_get_str(root, "Message");
        char text[300];
        snprintf(text, sizeof text, "%s: %s", m->exception_type[0] ? m->exception_type : "error", msg ? msg : "no message");
        chat_event ev = { .type = CEV_ERROR, .text = { text, strlen(text) } };
        s->emit(s->ud, &ev);
        s->failed = 1;
        json_doc_free(doc);
        return;
    }
    const char *et = m->event_type;
    if (!strcmp(et, "contentBlockStart")) {
        const json_value *start = json_get(root, "start"), *tu = start ? json_get(start, "toolUse") : NULL;
        int bi = block_index(root);
        if (tu) {
            const json_value *id = json_get(tu, "toolUseId"), *name = json_get(tu, "name");
            if (bi < 0 || !id || id->type != JSON_STRING || !name || name->type != JSON_STRING || s->ntools >= CHAT_MAX_TOOL_CALLS) s->failed = 1;
            else {
                s->tool_of_block[bi] = (short)(++s->ntools);
                chat_event ev = { .type = CEV_TOOL_START, .index = s->ntools - 1,
                                  .id = { id->str, id->str_len }, .name = { name->str, name->str_len } };
                s->emit(s->ud, &ev);
            }
        }
    } else if (!strcmp(et, "contentBlockDelta")) {
        const json_value *d = json_get(root, "delta");
        const json_value *t = d ? json_get(d, "text") : NULL, *tu = d ? json_get(d, "toolUse") : NULL;
        int bi = block_index(root);
        if (bi < 0 || !d) s->failed = 1;
        else if (t && t->type == JSON_STRING) {
            chat_event ev = { .type = CEV_TEXT, .text = { t->str, t->str_len } };
            s->emit(s->ud, &ev);
        } else if (tu) {
            const json_value *in = json_get(tu, "input");
            if (!in || in->type != JSON_STRING || !s->tool_of_block[bi]) s->failed = 1;
            else if (in->str_len) {
                chat_event ev = { .type = CEV_TOOL_ARGS, .index = s->tool_of_block[bi] - 1, .text = { in->str, in->str_len } };
                s->emit(s->ud, &ev);
            }
        }   /* reasoningContent stays with Bedrock */
    } else if (!strcmp(et, "messageStop")) {
        chat_event ev = { .type = CEV_FINISH, .finish = finish_of(json_get_str(root, "stopReason")) };
        if (ev.finish == FINISH_NONE) ev.finish = FINISH_STOP;
        s->emit(s->ud, &ev);
        s->stopped = 1;
    } else if (!strcmp(et, "metadata")) {
        const json_value *u = json_get(root, "usage");
        if (u && u->type == JSON_OBJECT) {
            chat_event ev = { .type = CEV_USAGE };
            usage_of(u, &ev.prompt_tokens, &ev.completion_tokens, &ev.cached_tokens);
            s->emit(s->ud, &ev);
        }
    }   /* messageStart, contentBlockStop */
    json_doc_free(doc);
}

void *bedrock_stream_new(void)
{
    br_stream *s = calloc(1, sizeof *s);
    if (s) es_init(&s->es, MAX_MESSAGE);
    return s;
}

int bedrock_stream_feed(void *st, const char *p, size_t n, chat_emit_fn emit, void *ud)
{
    br_stream *s = st;
    s->emit = emit;
    s->ud = ud;
    if (!s->failed && es_feed(&s->es, p, n, on_message, s) < 0) s->failed = 1;
    return s->failed ? -1 : 0;
}

int bedrock_stream_end(void *st, chat_emit_fn emit, void *ud)
{
    br_stream *s = st;
    (void)emit; (void)ud;
    /* the end: messageStop seen and no half message left over */
    return !s->failed && s->stopped && s->es.buf.len == 0 ? 0 : -1;
}

void bedrock_stream_free(void *st)
{
    br_stream *s = st;
    if (!s) return;
    es_free(&s->es);
    free(s);
}

/* ---- embeddings: InvokeModel with Titan (one text per call) or Cohere (a batch) ---- */

static int build_embed(const provider_call *call, provider_http *out, char *err, size_t errlen)
{
    const gw_deployment *d = call->dep;
    int titan = strstr(d->model, "titan-embed") != NULL, cohere = strstr(d->model, "cohere.embed") != NULL;
    const json_value *items;
    size_t n;
    if (!titan && !cohere) {
        snprintf(err, errlen, "Bedrock embeddings are served for amazon.titan-embed-* and cohere.embed-* models.");
        return -1;
    }
    if (embed_inputs(call->root, &items, &n, err, errlen) < 0) return -1;
    if (titan && n > 1) { snprintf(err, errlen, "Titan embeddings take one input per request."); return -1; }
    if (cohere && n > 96) { snprintf(err, errlen, "Cohere embeddings on Bedrock take at most 96 inputs per request."); return -1; }
    buf_reset(&out->url);
    buf_puts(&out->url, d->base_url);
    buf_puts(&out->url, "/model/");
    put_path_segment(&out->url, d->model);
    buf_puts(&out->url, "/invoke");
    buf_t *b = &out->body;
    buf_reset(b);
    if (titan) {
        const json_value *dims = json_get(call->root, "dimensions");
        buf_puts(b, "{\"inputText\":");
        buf_json_str(b, items->str, items->str_len);
        if (dims && dims->type == JSON_NUMBER && dims->is_int && dims->i64 > 0 && dims->i64 <= 8192)
            buf_printf(b, ",\"dimensions\":%lld", (long long)dims->i64);
        buf_putc(b, '}');
    } else {
        buf_puts(b, "{\"texts\":[");
        for (size_t i = 0; i < n; i++, items = items->next) {
            if (i) buf_putc(b, ',');
            buf_json_str(b, items->str, items->str_len);
        }
        buf_puts(b, "],\"input_type\":\"search_document\"}");
    }
    if (b->oom || out->url.oom) { snprintf(err, errlen, "out of memory"); return -1; }
    return sign(d, out, err, errlen);
}

static int parse_embed(const char *body, size_t len, int base64, const char *model, buf_t *out, usage_t *u,
                       char *err, size_t errlen)
{
    json_limits lim = RESPONSE_LIMITS;
    json_doc *doc = json_parse(body, len, &lim, NULL);
    const json_value *root = doc ? json_root(doc) : NULL;
    const json_value *one = root ? json_get(root, "embedding") : NULL, *many = root ? json_get(root, "embeddings") : NULL;
    int rc = -1;
    embed_begin(out);
    if (one) {   /* Titan */
        if (embed_vector(out, 0, one, base64) < 0) goto bad;
        u->prompt_tokens = count_of(root, "inputTextTokenCount");
    } else if (many && many->type == JSON_ARRAY) {   /* Cohere */
        size_t i = 0;
        for (const json_value *e = many->first; e; e = e->next, i++)
            if (embed_vector(out, i, e, base64) < 0) goto bad;
    } else {
        goto bad;
    }
    u->present = 1;
    embed_end(out, model, u->prompt_tokens);
    rc = out->oom ? -1 : 0;
    goto done;
bad:
    snprintf(err, errlen, "the provider's answer has no well-formed embedding");
done:
    json_doc_free(doc);
    return rc;
}

const provider provider_bedrock = {
    .name = "bedrock", .dialect = DIALECT_OTHER, .prepare = prepare,
    .build_chat = build_chat, .parse_response = parse_response,
    .stream_new = bedrock_stream_new, .stream_feed = bedrock_stream_feed, .stream_end = bedrock_stream_end,
    .stream_free = bedrock_stream_free, .error_message = error_message,
    .build_embed = build_embed, .parse_embed = parse_embed,
};
