#include "decorate.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The parameters a default may be given for, their bounds and dialects. */
enum { FOR_CHAT = 1, FOR_MESSAGES = 2 };
static const struct {
    const char *name;
    int         integer;
    double      min, max;
    int         dialects;
} params[] = {
    { "temperature",           0, 0, 2,     FOR_CHAT | FOR_MESSAGES },
    { "top_p",                 0, 0, 1,     FOR_CHAT | FOR_MESSAGES },
    { "top_k",                 1, 1, 1e6,   FOR_CHAT | FOR_MESSAGES },
    { "max_tokens",            1, 1, 1e7,   FOR_CHAT | FOR_MESSAGES },
    { "max_completion_tokens", 1, 1, 1e7,   FOR_CHAT },
    { "presence_penalty",      0, -2, 2,    FOR_CHAT },
    { "frequency_penalty",     0, -2, 2,    FOR_CHAT },
    { "seed",                  1, -9e15, 9e15, FOR_CHAT },
};
#define NPARAMS (sizeof params / sizeof params[0])

int prompt_set(gw_prompt *p, const char *key, const char *value, char *err, size_t errlen)
{
    if (!strcmp(key, "system_prefix") || !strcmp(key, "system_suffix")) {
        char **dst = key[7] == 'p' ? &p->system_prefix : &p->system_suffix;
        if (strlen(value) > PROMPT_TEXT_MAX) { snprintf(err, errlen, "longer than %d bytes", PROMPT_TEXT_MAX); return -1; }
        char *copy = strdup(value);
        if (!copy) { snprintf(err, errlen, "out of memory"); return -1; }
        free(*dst);
        *dst = copy;
        return 0;
    }
    if (strncmp(key, "defaults.", 9)) { snprintf(err, errlen, "unknown field"); return -1; }
    size_t i = 0;
    while (i < NPARAMS && strcmp(params[i].name, key + 9)) i++;
    if (i == NPARAMS) {
        snprintf(err, errlen, "unknown parameter (temperature, top_p, top_k, max_tokens, max_completion_tokens, "
                              "presence_penalty, frequency_penalty, seed)");
        return -1;
    }
    char *end;
    errno = 0;
    double x = strtod(value, &end);
    if (errno || end == value || *end || !(x >= params[i].min && x <= params[i].max) ||
        (params[i].integer && x != floor(x))) {
        snprintf(err, errlen, "must be %s from %g to %g", params[i].integer ? "an integer" : "a number",
                 params[i].min, params[i].max);
        return -1;
    }
    size_t j = 0;
    while (j < p->ndefaults && p->defaults[j].id != (int)i) j++;
    if (j == PROMPT_MAX_DEFAULTS) { snprintf(err, errlen, "too many defaults"); return -1; }
    if (j == p->ndefaults) p->ndefaults++;
    p->defaults[j].id = (int)i;
    p->defaults[j].value = x;
    return 0;
}

void prompt_free(gw_prompt *p)
{
    if (!p) return;
    free(p->system_prefix);
    free(p->system_suffix);
    free(p);
}

gw_prompt *prompt_from_json(const char *text, char *err, size_t errlen)
{
    err[0] = '\0';
    if (!text || !text[0]) return NULL;
    json_limits lim = { .max_depth = 3, .max_bytes = 4 * PROMPT_TEXT_MAX };
    json_error jerr;
    json_doc *doc = json_parse(text, strlen(text), &lim, &jerr);
    const json_value *o = doc ? json_root(doc) : NULL;
    gw_prompt *p = calloc(1, sizeof *p);
    if (!p) { snprintf(err, errlen, "out of memory"); goto fail; }
    if (!o || o->type != JSON_OBJECT) { snprintf(err, errlen, "not a JSON object"); goto fail; }
    for (const json_value *v = o->first; v; v = v->next) {
        char why[200], key[64], num[40];
        if (!strcmp(v->key, "defaults") && v->type == JSON_OBJECT) {
            for (const json_value *d = v->first; d; d = d->next) {
                snprintf(key, sizeof key, "defaults.%.50s", d->key);
                snprintf(num, sizeof num, "%.17g", d->num);
                if (d->type != JSON_NUMBER || prompt_set(p, key, num, why, sizeof why) < 0) {
                    snprintf(err, errlen, "prompt.%s: %s", key, d->type != JSON_NUMBER ? "must be a number" : why);
                    goto fail;
                }
            }
        } else if (v->type != JSON_STRING || strlen(v->str) != v->str_len || prompt_set(p, v->key, v->str, why, sizeof why) < 0) {
            snprintf(err, errlen, "prompt.%.40s: %s", v->key, v->type != JSON_STRING ? "must be a string" : "bad value");
            goto fail;
        }
    }
    json_doc_free(doc);
    return p;
fail:
    if (!err[0]) snprintf(err, errlen, "out of memory");
    json_doc_free(doc);
    prompt_free(p);
    return NULL;
}

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
    if (params[id].integer) buf_put_i64(out, (long long)x);
    else buf_printf(out, "%.15g", x);
}

int decorate_body(const gw_prompt *p, int anthropic, const char *src, size_t len, const json_value *root, buf_t *out)
{
    (void)len;
    if (!p || !root || root->type != JSON_OBJECT) return 0;
    int sys = p->system_prefix || p->system_suffix;
    int dialect = anthropic ? FOR_MESSAGES : FOR_CHAT;
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
        const char *name = params[id].name;
        if (!(params[id].dialects & dialect) || json_get(root, name)) continue;   /* the client's own wins */
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
