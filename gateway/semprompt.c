/* semprompt: the semantic cache's prompt text, guards and partition (semprompt.h). */
#include "semprompt.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "cache.h"
#include "providers/provider.h"

const char *semprompt_skip_name(int reason)
{
    static const char *const names[] = { "none", "optout", "tools", "temperature", "content", "embedding" };
    return reason >= 0 && reason < SEM_SKIP_KINDS ? names[reason] : "other";
}

/* Is tok one of the comma-separated directives of v? */
static int has_token(const char *v, const char *tok)
{
    size_t tl = strlen(tok);
    for (const char *p = v; *p;) {
        while (*p == ' ' || *p == '\t' || *p == ',') p++;
        const char *s = p;
        while (*p && *p != ',') p++;
        size_t n = (size_t)(p - s);
        while (n && (s[n - 1] == ' ' || s[n - 1] == '\t')) n--;
        if (n == tl && !strncasecmp(s, tok, n)) return 1;
    }
    return 0;
}

int semprompt_optout(const char *cc, const char *xgc, const char *xsem)
{
    if (cc && (has_token(cc, "no-cache") || has_token(cc, "no-store"))) return 1;
    if (xgc && (has_token(xgc, "bypass") || has_token(xgc, "off") || has_token(xgc, "false") ||
                has_token(xgc, "no-cache") || has_token(xgc, "refresh") || has_token(xgc, "no-store")))
        return 1;
    return xsem && (has_token(xsem, "off") || has_token(xsem, "false") || has_token(xsem, "bypass"));
}

/* Appends s with whitespace runs folded into one space. */
static void put_folded(buf_t *out, const char *s, size_t n)
{
    int space = out->len > 0;   /* a separator before the text, if anything precedes it */
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (isspace(c)) { space = 1; continue; }
        if (space) buf_putc(out, ' ');
        space = 0;
        buf_putc(out, (char)c);
    }
}

/* A content value: a string, or an array of parts where only text parts may
 * appear (tool parts: TOOLS, images and the rest: CONTENT). */
static int put_content(buf_t *out, const json_value *c)
{
    if (!c || c->type == JSON_NULL) return SEM_SKIP_NONE;
    if (c->type == JSON_STRING) { put_folded(out, c->str, c->str_len); return SEM_SKIP_NONE; }
    if (c->type != JSON_ARRAY) return SEM_SKIP_CONTENT;
    for (const json_value *part = c->first; part; part = part->next) {
        const char *type = json_get_str(part, "type");
        const json_value *t = json_get(part, "text");
        if (type && (!strcmp(type, "tool_use") || !strcmp(type, "tool_result") || !strcmp(type, "function")))
            return SEM_SKIP_TOOLS;
        if (!type || strcmp(type, "text") || !t || t->type != JSON_STRING) return SEM_SKIP_CONTENT;
        put_folded(out, t->str, t->str_len);
    }
    return SEM_SKIP_NONE;
}

int semprompt_text(const json_value *root, int route, double max_temperature, buf_t *out)
{
    const json_value *tools = json_get(root, "tools"), *fns = json_get(root, "functions");
    if ((tools && tools->type != JSON_NULL) || (fns && fns->type != JSON_NULL)) return SEM_SKIP_TOOLS;
    const json_value *t = json_get(root, "temperature");
    double temp = t && t->type == JSON_NUMBER ? t->num : 1.0;
    if (t && t->type != JSON_NUMBER && t->type != JSON_NULL) return SEM_SKIP_CONTENT;
    if (!(temp <= max_temperature)) return SEM_SKIP_TEMPERATURE;
    int why = SEM_SKIP_NONE;
    if (route == ROUTE_MESSAGES) {   /* Anthropic: the system prompt is a top-level member */
        const json_value *sys = json_get(root, "system");
        if (sys && sys->type != JSON_NULL) {
            buf_puts(out, "system:");
            if ((why = put_content(out, sys))) return why;
            buf_putc(out, '\n');
        }
    } else if (route != ROUTE_CHAT) {
        return SEM_SKIP_CONTENT;
    }
    const json_value *msgs = json_get(root, "messages");
    if (!msgs || msgs->type != JSON_ARRAY) return SEM_SKIP_CONTENT;
    for (const json_value *m = msgs->first; m; m = m->next) {
        const char *role = json_get_str(m, "role");
        if (!role) return SEM_SKIP_CONTENT;
        if (!strcmp(role, "tool") || !strcmp(role, "function") || json_get(m, "tool_calls") ||
            json_get(m, "function_call"))
            return SEM_SKIP_TOOLS;
        /* "developer" is OpenAI's newer name for the system role */
        buf_puts(out, !strcmp(role, "developer") ? "system" : role);
        buf_putc(out, ':');
        if ((why = put_content(out, json_get(m, "content")))) return why;
        buf_putc(out, '\n');
        if (out->len > SEMPROMPT_MAX_TEXT) return SEM_SKIP_CONTENT;
    }
    return out->oom ? SEM_SKIP_CONTENT : SEM_SKIP_NONE;
}

void semprompt_partition(const json_value *root, int route, int stream, const char *alias, const char *ns,
                         uint8_t key[32])
{
    /* the conversation is what gets compared; sampling below the bound may differ */
    static const char *const skip[] = { "model", "stream", "user", "metadata", "messages", "system",
                                        "temperature", "top_p", "top_k", "seed", NULL };
    char sns[300];
    snprintf(sns, sizeof sns, "sem:%s", ns ? ns : "");
    cache_key_skip(root, route, stream, alias, sns, skip, key);
}
