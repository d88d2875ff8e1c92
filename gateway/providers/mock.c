/* mock: a built-in provider that answers in-process, deterministically, with
 * realistic usage, for `make run`, tests and demos. latency_ms on the
 * deployment delays the answer (the request layer applies it). */
#include "provider.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config.h"

static int prepare(gw_deployment *d, char *err, size_t errlen) { (void)d; (void)err; (void)errlen; return 0; }

/* The last user message's text (string content or the first text part). */
static const json_value *last_user_text(const json_value *root)
{
    const json_value *msgs = json_get(root, "messages"), *found = NULL;
    if (!msgs || msgs->type != JSON_ARRAY) return NULL;
    for (const json_value *m = msgs->first; m; m = m->next) {
        const char *role = json_get_str(m, "role");
        const json_value *c = json_get(m, "content");
        if (!role || strcmp(role, "user") || !c) continue;
        if (c->type == JSON_STRING) found = c;
        else if (c->type == JSON_ARRAY)
            for (const json_value *part = c->first; part; part = part->next) {
                const json_value *t = json_get(part, "text");
                if (t && t->type == JSON_STRING) { found = t; break; }
            }
    }
    return found;
}

static long estimate_tokens(size_t bytes) { return (long)(bytes / 4 + 1); }

/* A translated request's last user text part (the client's dialect may have no "messages"). */
static gw_str chat_last_user_text(const chat_req *q)
{
    gw_str found = { NULL, 0 };
    for (size_t i = 0; i < q->nmsgs; i++)
        for (size_t k = 0; q->msgs[i].role == ROLE_USER && k < q->msgs[i].nparts; k++)
            if (q->msgs[i].parts[k].kind == PART_TEXT) { found = q->msgs[i].parts[k].text; break; }
    return found;
}

static void reply_text(const provider_call *call, buf_t *text)
{
    const json_value *u = call->route == ROUTE_CHAT ? last_user_text(call->root) : json_get(call->root, "prompt");
    gw_str t = u && u->type == JSON_STRING ? (gw_str){ u->str, u->str_len } : (gw_str){ NULL, 0 };
    if (call->chat && call->chat->responses) t = chat_last_user_text(call->chat);
    buf_puts(text, "This is a mock response from the gateway. You said: ");
    if (t.p) buf_append(text, t.p, utf8_prefix(t.p, t.n, 60));
    else buf_puts(text, "(nothing)");
}

static long count_words(const char *s, size_t n)
{
    long w = 0;
    int in = 0;
    for (size_t i = 0; i < n; i++) {
        int sp = s[i] == ' ' || s[i] == '\n' || s[i] == '\t';
        if (!sp && !in) w++;
        in = !sp;
    }
    return w;
}

static void usage_json(buf_t *out, long prompt, long completion)
{
    buf_printf(out, "\"usage\":{\"prompt_tokens\":%ld,\"completion_tokens\":%ld,\"total_tokens\":%ld}",
               prompt, completion, prompt + completion);
}

static void chunk(buf_t *out, const char *id, long created, const char *model, const char *delta_json,
                  const char *finish)
{
    buf_printf(out, "data: {\"id\":\"%s\",\"object\":\"chat.completion.chunk\",\"created\":%ld,\"model\":", id, created);
    buf_json_str(out, model, strlen(model));
    buf_printf(out, ",\"choices\":[{\"index\":0,\"delta\":%s,\"finish_reason\":%s}]}\n\n", delta_json, finish);
}

static void chat_stream(const provider_call *call, const char *id, long created, buf_t *text, long prompt, buf_t *out)
{
    const char *model = call->dep->model;
    long completion = count_words(text->data, text->len);
    buf_t delta; buf_init(&delta);
    chunk(out, id, created, model, "{\"role\":\"assistant\",\"content\":\"\"}", "null");
    /* one chunk per word, as real providers stream a few tokens at a time */
    size_t i = 0;
    while (i < text->len) {
        size_t j = i;
        while (j < text->len && text->data[j] != ' ') j++;
        if (j < text->len) j++;
        buf_reset(&delta);
        buf_puts(&delta, "{\"content\":");
        buf_json_str(&delta, text->data + i, j - i);
        buf_putc(&delta, '}');
        chunk(out, id, created, model, delta.data, "null");
        i = j;
    }
    chunk(out, id, created, model, "{}", "\"stop\"");
    const json_value *so = json_get(call->root, "stream_options");
    if ((so && json_get_bool(so, "include_usage")) || call->want_usage) {
        buf_printf(out, "data: {\"id\":\"%s\",\"object\":\"chat.completion.chunk\",\"created\":%ld,\"model\":", id, created);
        buf_json_str(out, model, strlen(model));
        buf_puts(out, ",\"choices\":[],");
        usage_json(out, prompt, completion);
        buf_puts(out, "}\n\n");
    }
    buf_puts(out, "data: [DONE]\n\n");
    buf_free(&delta);
}

/* A deterministic embedding that still means something: a hashed bag of
 * words (weight 1) and of the words' character trigrams (weight 0.5), signed
 * feature hashing into dim buckets, unit length. Paraphrases that share most
 * words score close to 1; unrelated text near 0. */
#define MOCK_EMBED_DIM 256
#define MOCK_EMBED_MAX 4096

static uint32_t fnv(const unsigned char *p, size_t n, uint32_t h)
{
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 16777619u;
    return h;
}

static void feature(float *v, uint32_t dim, const unsigned char *p, size_t n, uint32_t salt, float w)
{
    uint32_t h = fnv(p, n, 2166136261u ^ salt);
    h ^= h >> 15; h *= 0x2c1b3c6du; h ^= h >> 12;   /* spread the low bits */
    v[h % dim] += (h & 0x80000000u) ? -w : w;
}

static void embed_text(const char *s, size_t n, float *v, uint32_t dim)
{
    memset(v, 0, dim * sizeof *v);
    unsigned char word[66];
    size_t i = 0;
    while (i < n) {
        while (i < n && !isalnum((unsigned char)s[i]) && (unsigned char)s[i] < 0x80) i++;
        size_t wl = 1;   /* word[0] and word[wl] are boundary marks for the trigrams */
        word[0] = '^';
        while (i < n && (isalnum((unsigned char)s[i]) || (unsigned char)s[i] >= 0x80)) {
            if (wl < 64) word[wl++] = (unsigned char)tolower((unsigned char)s[i]);
            i++;
        }
        if (wl == 1) continue;
        feature(v, dim, word + 1, wl - 1, 0, 1.0f);
        word[wl] = '$';
        for (size_t k = 0; k + 3 <= wl + 1; k++) feature(v, dim, word + k, 3, 0x5bd1e995u, 0.5f);
    }
    double norm = 0;
    for (uint32_t d = 0; d < dim; d++) norm += (double)v[d] * v[d];
    if (norm == 0) { v[0] = 1; return; }   /* empty text: still a unit vector */
    float inv = (float)(1.0 / sqrt(norm));
    for (uint32_t d = 0; d < dim; d++) v[d] *= inv;
}

static void embeddings(const provider_call *call, buf_t *out)
{
    const json_value *in = json_get(call->root, "input");
    const json_value *dims = json_get(call->root, "dimensions");
    uint32_t dim = MOCK_EMBED_DIM;
    if (dims && dims->type == JSON_NUMBER && dims->num >= 1 && dims->num <= MOCK_EMBED_MAX) dim = (uint32_t)dims->num;
    size_t bytes = in ? in->end - in->start : 0;
    if (in && in->type == JSON_ARRAY && in->count > 2048) { out->oom = 1; return; }   /* bounded answer: refused */
    float *v = malloc(dim * sizeof *v);
    if (!v) { out->oom = 1; return; }
    buf_puts(out, "{\"object\":\"list\",\"data\":[");
    const json_value *item = in && in->type == JSON_ARRAY ? in->first : in;
    for (size_t i = 0; item || (i == 0 && !in); i++) {
        /* a string embeds its text; anything else (token arrays) its JSON */
        if (item && item->type == JSON_STRING) embed_text(item->str, item->str_len, v, dim);
        else if (item) embed_text(call->body + item->start, item->end - item->start, v, dim);
        else embed_text("", 0, v, dim);
        buf_printf(out, "%s{\"object\":\"embedding\",\"index\":%zu,\"embedding\":[", i ? "," : "", i);
        for (uint32_t d = 0; d < dim; d++) buf_printf(out, "%s%.6f", d ? "," : "", v[d]);
        buf_puts(out, "]}");
        if (!item || !(in->type == JSON_ARRAY)) break;
        item = item->next;
    }
    free(v);
    buf_puts(out, "],\"model\":");
    buf_json_str(out, call->dep->model, strlen(call->dep->model));
    buf_printf(out, ",\"usage\":{\"prompt_tokens\":%ld,\"total_tokens\":%ld}}", estimate_tokens(bytes), estimate_tokens(bytes));
}

static int local_reply(const provider_call *call, int *status, buf_t *out)
{
    static unsigned long seq;
    char id[48];
    long created = (long)time(NULL);
    buf_t text; buf_init(&text);
    *status = 200;
    if (call->route == ROUTE_EMBEDDINGS) {
        embeddings(call, out);
        return out->oom ? -1 : 0;
    }
    reply_text(call, &text);
    const json_value *msgs = json_get(call->root, call->route == ROUTE_CHAT ? "messages" : "prompt");
    long prompt = estimate_tokens(call->chat && call->chat->responses ? call->body_len : msgs ? msgs->end - msgs->start : 0);
    long completion = count_words(text.data, text.len);
    snprintf(id, sizeof id, "%s-mock-%lu", call->route == ROUTE_CHAT ? "chatcmpl" : "cmpl", ++seq);
    if (call->route == ROUTE_CHAT && call->stream) {
        chat_stream(call, id, created, &text, prompt, out);
    } else if (call->route == ROUTE_CHAT) {
        buf_printf(out, "{\"id\":\"%s\",\"object\":\"chat.completion\",\"created\":%ld,\"model\":", id, created);
        buf_json_str(out, call->dep->model, strlen(call->dep->model));
        buf_puts(out, ",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":");
        buf_json_str(out, text.data, text.len);
        buf_puts(out, "},\"logprobs\":null,\"finish_reason\":\"stop\"}],");
        usage_json(out, prompt, completion);
        buf_putc(out, '}');
    } else if (call->stream) {
        buf_printf(out, "data: {\"id\":\"%s\",\"object\":\"text_completion\",\"created\":%ld,\"model\":", id, created);
        buf_json_str(out, call->dep->model, strlen(call->dep->model));
        buf_puts(out, ",\"choices\":[{\"index\":0,\"text\":");
        buf_json_str(out, text.data, text.len);
        buf_puts(out, ",\"finish_reason\":\"stop\"}]}\n\n");
        const json_value *so = json_get(call->root, "stream_options");
        if ((so && json_get_bool(so, "include_usage")) || call->want_usage) {
            buf_printf(out, "data: {\"id\":\"%s\",\"object\":\"text_completion\",\"created\":%ld,\"model\":", id, created);
            buf_json_str(out, call->dep->model, strlen(call->dep->model));
            buf_puts(out, ",\"choices\":[],");
            usage_json(out, prompt, completion);
            buf_puts(out, "}\n\n");
        }
        buf_puts(out, "data: [DONE]\n\n");
    } else {
        buf_printf(out, "{\"id\":\"%s\",\"object\":\"text_completion\",\"created\":%ld,\"model\":", id, created);
        buf_json_str(out, call->dep->model, strlen(call->dep->model));
        buf_puts(out, ",\"choices\":[{\"index\":0,\"text\":");
        buf_json_str(out, text.data, text.len);
        buf_puts(out, ",\"logprobs\":null,\"finish_reason\":\"stop\"}],");
        usage_json(out, prompt, completion);
        buf_putc(out, '}');
    }
    buf_free(&text);
    return out->oom ? -1 : 0;
}

const provider provider_mock = {
    .name = "mock", .dialect = DIALECT_OPENAI, .prepare = prepare, .local_reply = local_reply,
    /* its answers are OpenAI-shaped: other clients get them translated */
    .parse_response = openai_parse_response, .stream_new = openai_stream_new, .stream_feed = openai_stream_feed,
    .stream_end = openai_stream_end, .stream_free = openai_stream_free, .error_message = openai_error_message,
};
