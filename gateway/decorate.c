#include "decorate.h"

#include "providers/chat.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the rewrite ---- */

static void put_raw_member(buf_t *out, const char *src, const json_value *v)
{
    buf_json_str(out, v->key, v->key_len);
    buf_putc(out, ':');
    buf_append(out, src + v->start, v->end - v->start);
}

/* prefix, text and suffix joined by blank lines (empty pieces skipped), as a JSON string */
static void put_joined(buf_t *out, const gw_prompt *p, const char *text, size_t n)
{
    buf_t t; buf_init(&t);
    const char *piece[3] = { p->system_prefix, text, p->system_suffix };
    size_t len[3] = { p->system_prefix ? strlen(p->system_prefix) : 0, text ? n : 0,
                      p->system_suffix ? strlen(p->system_suffix) : 0 };
    for (int i = 0; i < 3; i++) {
        if (!len[i]) continue;
        if (t.len) buf_puts(&t, "\n\n");
        buf_append(&t, piece[i], len[i]);
    }
    buf_json_str(out, t.data ? t.data : "", t.len);
    if (t.oom) out->oom = 1;
    buf_free(&t);
}

static void put_text_block(buf_t *out, const char *text)
{
    buf_puts(out, "{\"type\":\"text\",\"text\":");
    buf_json_str(out, text, strlen(text));
    buf_putc(out, '}');
}

/* An array of content blocks with the prefix and suffix as text blocks around it. */
static void put_wrapped_blocks(buf_t *out, const gw_prompt *p, const char *src, const json_value *arr)
{
    int first = 1;
    buf_putc(out, '[');
    if (p->system_prefix) { put_text_block(out, p->system_prefix); first = 0; }
    for (const json_value *e = arr->first; e; e = e->next) {
        if (!first) buf_putc(out, ',');
        buf_append(out, src + e->start, e->end - e->start);
        first = 0;
    }
    if (p->system_suffix) { if (!first) buf_putc(out, ','); put_text_block(out, p->system_suffix); }
    buf_putc(out, ']');
}

/* A system value (a string or blocks) decorated; anything else is left as it is. */
static void put_system_value(buf_t *out, const gw_prompt *p, const char *src, const json_value *v)
{
    if (v->type == JSON_STRING) put_joined(out, p, v->str, v->str_len);
    else if (v->type == JSON_ARRAY) put_wrapped_blocks(out, p, src, v);
    else buf_append(out, src + v->start, v->end - v->start);
}

static int is_system_msg(const json_value *m)
{
    const char *role = m && m->type == JSON_OBJECT ? json_get_str(m, "role") : NULL;
    return role && (!strcmp(role, "system") || !strcmp(role, "developer"));
}

/* OpenAI messages: the first system (or developer) message decorated, or a new one first. */
static void put_messages(buf_t *out, const gw_prompt *p, const char *src, const json_value *msgs)
{
    const json_value *m0 = msgs->first;
    buf_putc(out, '[');
    if (is_system_msg(m0)) {
        buf_putc(out, '{');
        for (const json_value *f = m0->first; f; f = f->next) {
            if (f != m0->first) buf_putc(out, ',');
            if (!strcmp(f->key, "content")) {
                buf_puts(out, "\"content\":");
                put_system_value(out, p, src, f);
            } else put_raw_member(out, src, f);
        }
        buf_putc(out, '}');
        m0 = m0->next;
        if (m0) buf_putc(out, ',');
    } else {
        buf_puts(out, "{\"role\":\"system\",\"content\":");
        put_joined(out, p, NULL, 0);
        buf_putc(out, '}');
        if (m0) buf_putc(out, ',');
    }
    for (const json_value *m = m0; m; m = m->next) {
        buf_append(out, src + m->start, m->end - m->start);
        if (m->next) buf_putc(out, ',');
    }
    buf_putc(out, ']');
}

static void put_number(buf_t *out, int id, double x)
{
    if (prompt_param_integer(id)) buf_put_i64(out, (long long)x);
    else buf_printf(out, "%.15g", x);
}

int decorate_body(const gw_prompt *p, int anthropic, const char *src, size_t len, const json_value *root, buf_t *out)
{
    (void)len;
    if (!p || !root || root->type != JSON_OBJECT) return 0;
    int sys = p->system_prefix || p->system_suffix;
    int dialect = anthropic ? PROMPT_FOR_MESSAGES : PROMPT_FOR_CHAT;
    const char *sys_key = anthropic ? "system" : "messages";
    const json_value *sv = json_get(root, sys_key);
    int sys_here = sys && (anthropic || (sv && sv->type == JSON_ARRAY));   /* completions: no messages */
    int changed = sys_here;
    buf_reset(out);
    buf_putc(out, '{');
    int first = 1;
    for (const json_value *v = root->first; v; v = v->next) {
        if (!first) buf_putc(out, ',');
        first = 0;
        if (sys_here && v == sv) {
            buf_json_str(out, v->key, v->key_len);
            buf_putc(out, ':');
            if (anthropic) put_system_value(out, p, src, v);
            else put_messages(out, p, src, v);
        } else put_raw_member(out, src, v);
    }
    if (sys_here && anthropic && !sv) {
        if (!first) buf_putc(out, ',');
        first = 0;
        buf_puts(out, "\"system\":");
        put_joined(out, p, NULL, 0);
    }
    for (size_t i = 0; i < p->ndefaults; i++) {
        int id = p->defaults[i].id;
        const char *name = prompt_param_name(id);
        if (!(prompt_param_dialects(id) & dialect) || json_get(root, name)) continue;   /* the client's own wins */
        /* the two names of the output cap are one setting */
        if (!strcmp(name, "max_tokens") && json_get(root, "max_completion_tokens")) continue;
        if (!strcmp(name, "max_completion_tokens") && json_get(root, "max_tokens")) continue;
        if (!first) buf_putc(out, ',');
        first = 0;
        buf_json_str(out, name, strlen(name));
        buf_putc(out, ':');
        put_number(out, id, p->defaults[i].value);
        changed = 1;
    }
    buf_putc(out, '}');
    if (out->oom) return -1;
    return changed;
}

int decorate_chat(const gw_prompt *p, chat_req *q)
{
    if (p->system_prefix || p->system_suffix) {
        buf_t s; buf_init(&s);
        const char *piece[3] = { p->system_prefix, q->system.data, p->system_suffix };
        size_t len[3] = { p->system_prefix ? strlen(p->system_prefix) : 0, q->system.data ? q->system.len : 0,
                          p->system_suffix ? strlen(p->system_suffix) : 0 };
        for (int i = 0; i < 3; i++) {
            if (!len[i]) continue;
            if (s.len) buf_puts(&s, "\n\n");
            buf_append(&s, piece[i], len[i]);
        }
        if (s.oom) { buf_free(&s); return -1; }
        buf_free(&q->system);
        q->system = s;
    }
    for (size_t i = 0; i < p->ndefaults; i++) {
        const char *name = prompt_param_name(p->defaults[i].id);
        double v = p->defaults[i].value;
        if (!strcmp(name, "temperature") && !q->has_temperature) { q->temperature = v; q->has_temperature = 1; }
        else if (!strcmp(name, "top_p") && !q->has_top_p) { q->top_p = v; q->has_top_p = 1; }
        else if (!strcmp(name, "top_k") && !q->has_top_k) { q->top_k = (long)v; q->has_top_k = 1; }
        else if (!strcmp(name, "seed") && !q->has_seed) { q->seed = (long long)v; q->has_seed = 1; }
        else if ((!strcmp(name, "max_tokens") || !strcmp(name, "max_completion_tokens")) && q->max_tokens < 0)
            q->max_tokens = (long)v;
    }
    return 0;
}
