/* inbound: the client's OpenAI chat / legacy completions or Anthropic
 * Messages body, parsed into the internal chat_req. Anything the gateway
 * cannot carry to another provider faithfully is a 400 naming the field,
 * never silently dropped meaning. */
#include "chat.h"
#include "inbound_util.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


int inb_bad(in_ctx *c, const char *param, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->msg, c->msglen, fmt, ap);
    va_end(ap);
    *c->param = param;
    return -1;
}


chat_msg *inb_add_msg(in_ctx *c, chat_role role, size_t max_parts)
{
    chat_req *r = c->r;
    if (r->nmsgs >= MAX_MESSAGES) { inb_bad(c, "messages", "Too many messages (at most %d).", MAX_MESSAGES); return NULL; }
    chat_msg *m = realloc(r->msgs, (r->nmsgs + 1) * sizeof *m);
    if (!m) { inb_bad(c, NULL, "Out of memory."); return NULL; }
    r->msgs = m;
    m = &r->msgs[r->nmsgs];
    memset(m, 0, sizeof *m);
    m->role = role;
    if (max_parts > MAX_PARTS) { inb_bad(c, "messages", "Too many content parts in one message (at most %d).", MAX_PARTS); return NULL; }
    if (!(m->parts = calloc(max_parts ? max_parts : 1, sizeof *m->parts))) { inb_bad(c, NULL, "Out of memory."); return NULL; }
    r->nmsgs++;
    return m;
}

int inb_append_system(in_ctx *c, const char *s, size_t n)
{
    buf_t *b = &c->r->system;
    if (b->len && buf_puts(b, "\n\n") < 0) return inb_bad(c, NULL, "Out of memory.");
    return buf_append(b, s, n) < 0 ? inb_bad(c, NULL, "Out of memory.") : 0;
}

/* "data:image/png;base64,AAAA" -> media type and data; 0 if it is not such a URL. */
int inb_split_data_url(gw_str url, chat_part *p)
{
    if (url.n < 5 || strncmp(url.p, "data:", 5)) return 0;
    const char *semi = memchr(url.p, ';', url.n), *comma = memchr(url.p, ',', url.n);
    if (!semi || !comma || comma < semi || (size_t)(comma - semi) != 7 || strncmp(semi, ";base64", 7)) return -1;
    p->media_type = (gw_str){ url.p + 5, (size_t)(semi - url.p - 5) };
    p->data = (gw_str){ comma + 1, url.n - (size_t)(comma + 1 - url.p) };
    /* providers get these pieces as they are: they must be what they claim */
    for (size_t i = 0; i < p->media_type.n; i++) {
        char ch = p->media_type.p[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '/' || ch == '+' || ch == '-' || ch == '.'))
            return -1;
    }
    for (size_t i = 0; i < p->data.n; i++) {
        char ch = p->data.p[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '+' || ch == '/' || ch == '='))
            return -1;
    }
    return 1;
}

/* Text of a string or an array of {type:"text", text} parts (joined). */
int inb_text_of(in_ctx *c, const json_value *v, const char *param, gw_str *out)
{
    if (!v || v->type == JSON_NULL) { *out = (gw_str){ "", 0 }; return 0; }
    if (v->type == JSON_STRING) { *out = S(v); return 0; }
    if (v->type != JSON_ARRAY) return inb_bad(c, param, "'%s' must be a string or an array of text parts.", param);
    if (v->count == 1) {
        const json_value *t = json_get(v->first, "text");
        if (!t || t->type != JSON_STRING) return inb_bad(c, param, "'%s' parts must be text parts.", param);
        *out = S(t);
        return 0;
    }
    buf_t b; buf_init(&b);
    for (const json_value *e = v->first; e; e = e->next) {
        const json_value *t = json_get(e, "text");
        if (!t || t->type != JSON_STRING) { buf_free(&b); return inb_bad(c, param, "'%s' parts must be text parts.", param); }
        if (b.len) buf_putc(&b, '\n');
        buf_append(&b, t->str, t->str_len);
    }
    const char *s = b.oom ? NULL : chat_req_strdup(c->r, b.data ? b.data : "", b.len);
    size_t n = b.len;
    buf_free(&b);
    if (!s) return inb_bad(c, NULL, "Out of memory.");
    *out = (gw_str){ s, n };
    return 0;
}

/* ---- OpenAI chat completions ---- */

static int oai_user_content(in_ctx *c, const json_value *content, chat_msg *m)
{
    if (content->type == JSON_STRING) {
        m->parts[m->nparts++] = (chat_part){ .kind = PART_TEXT, .text = S(content) };
        return 0;
    }
    for (const json_value *p = content->first; p; p = p->next) {
        const char *type = json_get_str(p, "type");
        if (type && !strcmp(type, "text")) {
            const json_value *t = json_get(p, "text");
            if (!t || t->type != JSON_STRING) return inb_bad(c, "messages", "A text content part needs a string 'text'.");
            m->parts[m->nparts++] = (chat_part){ .kind = PART_TEXT, .text = S(t) };
        } else if (type && !strcmp(type, "image_url")) {
            const json_value *iu = json_get(p, "image_url");
            gw_str url = S(iu && iu->type == JSON_OBJECT ? json_get(iu, "url") : iu);
            if (!url.p) return inb_bad(c, "messages", "An image_url content part needs 'image_url.url'.");
            chat_part part = { .kind = PART_IMAGE };
            int d = inb_split_data_url(url, &part);
            if (d < 0) return inb_bad(c, "messages", "Image data URLs must be base64 ('data:<type>;base64,...').");
            if (!d) part.url = url;
            m->parts[m->nparts++] = part;
        } else {
            return inb_bad(c, "messages", "Content parts of type '%s' cannot be sent to this model's provider.", type ? type : "(none)");
        }
    }
    return 0;
}

static int oai_message(in_ctx *c, const json_value *e, size_t i)
{
    const char *role = json_get_str(e, "role");
    const json_value *content = json_get(e, "content");
    if (!role) return inb_bad(c, "messages", "'messages[%zu]' must be an object with a string 'role'.", i);
    if (content && content->type != JSON_STRING && content->type != JSON_ARRAY && content->type != JSON_NULL)
        return inb_bad(c, "messages", "'messages[%zu].content' must be a string, an array or null.", i);
    if (!strcmp(role, "system") || !strcmp(role, "developer")) {
        gw_str t;
        if (inb_text_of(c, content, "messages", &t) < 0) return -1;
        return inb_append_system(c, t.p, t.n);
    }
    if (!strcmp(role, "user")) {
        if (!content || content->type == JSON_NULL) return inb_bad(c, "messages", "'messages[%zu].content' is required.", i);
        chat_msg *m = inb_add_msg(c, ROLE_USER, content->type == JSON_ARRAY ? content->count : 1);
        return m ? oai_user_content(c, content, m) : -1;
    }
    if (!strcmp(role, "assistant")) {
        const json_value *tc = json_get(e, "tool_calls");
        size_t ncalls = tc && tc->type == JSON_ARRAY ? tc->count : 0;
        chat_msg *m = inb_add_msg(c, ROLE_ASSISTANT, ncalls + 1);
        if (!m) return -1;
        gw_str t;
        if (inb_text_of(c, content, "messages", &t) < 0) return -1;
        if (t.n) m->parts[m->nparts++] = (chat_part){ .kind = PART_TEXT, .text = t };
        for (const json_value *call = tc && tc->type == JSON_ARRAY ? tc->first : NULL; call; call = call->next) {
            const json_value *fn = json_get(call, "function");
            gw_str id = S(json_get(call, "id")), name = S(fn ? json_get(fn, "name") : NULL);
            gw_str args = S(fn ? json_get(fn, "arguments") : NULL);
            if (!id.p || !name.p) return inb_bad(c, "messages", "'messages[%zu].tool_calls' entries need 'id' and 'function.name'.", i);
            if (!args.p) args = (gw_str){ "{}", 2 };
            m->parts[m->nparts++] = (chat_part){ .kind = PART_TOOL_CALL, .id = id, .name = name, .args = args };
        }
        return 0;
    }
    if (!strcmp(role, "tool")) {
        gw_str id = S(json_get(e, "tool_call_id")), t;
        if (!id.p) return inb_bad(c, "messages", "'messages[%zu].tool_call_id' is required for tool messages.", i);
        if (inb_text_of(c, content, "messages", &t) < 0) return -1;
        chat_msg *m = inb_add_msg(c, ROLE_TOOL, 1);
        if (!m) return -1;
        m->parts[m->nparts++] = (chat_part){ .kind = PART_TOOL_RESULT, .id = id, .text = t };
        return 0;
    }
    return inb_bad(c, "messages", "'messages[%zu].role' '%s' is not supported for this model's provider.", i, role);
}

static int oai_tools(in_ctx *c, const json_value *root, const char *src)
{
    const json_value *tools = json_get(root, "tools");
    if (tools && tools->type != JSON_NULL) {
        if (tools->type != JSON_ARRAY) return inb_bad(c, "tools", "'tools' must be an array.");
        if (tools->count > MAX_TOOLS) return inb_bad(c, "tools", "Too many tools (at most %d).", MAX_TOOLS);
        if (!(c->r->tools = calloc(tools->count ? tools->count : 1, sizeof *c->r->tools))) return inb_bad(c, NULL, "Out of memory.");
        for (const json_value *t = tools->first; t; t = t->next) {
            const json_value *fn = json_get(t, "function");
            const char *type = json_get_str(t, "type");
            gw_str name = S(fn ? json_get(fn, "name") : NULL);
            if (!type || strcmp(type, "function") || !name.p) return inb_bad(c, "tools", "Each tool must be {\"type\":\"function\",\"function\":{\"name\":...}}.");
            const json_value *params = json_get(fn, "parameters");
            if (params && params->type != JSON_OBJECT) return inb_bad(c, "tools", "'function.parameters' must be an object.");
            c->r->tools[c->r->ntools++] = (chat_tool){ .name = name, .description = S(json_get(fn, "description")),
                                                       .parameters = params, .src = src };
        }
    }
    const json_value *tc = json_get(root, "tool_choice");
    if (tc && tc->type == JSON_STRING) {
        if (!strcmp(tc->str, "auto")) c->r->tool_choice = TOOL_CHOICE_AUTO;
        else if (!strcmp(tc->str, "none")) c->r->tool_choice = TOOL_CHOICE_NONE;
        else if (!strcmp(tc->str, "required")) c->r->tool_choice = TOOL_CHOICE_REQUIRED;
        else return inb_bad(c, "tool_choice", "'tool_choice' must be auto, none, required or a function.");
    } else if (tc && tc->type == JSON_OBJECT) {
        const json_value *fn = json_get(tc, "function");
        gw_str name = S(fn ? json_get(fn, "name") : NULL);
        if (!name.p) return inb_bad(c, "tool_choice", "'tool_choice.function.name' is required.");
        c->r->tool_choice = TOOL_CHOICE_NAMED;
        c->r->tool_choice_name = name;
    } else if (tc && tc->type != JSON_NULL) {
        return inb_bad(c, "tool_choice", "'tool_choice' must be a string or an object.");
    }
    const json_value *ptc = json_get(root, "parallel_tool_calls");
    if (ptc && (ptc->type == JSON_TRUE || ptc->type == JSON_FALSE)) c->r->parallel_tool_calls = ptc->type == JSON_TRUE;
    return 0;
}

int inb_number(in_ctx *c, const json_value *root, const char *k, double lo, double hi, int *has, double *out)
{
    const json_value *v = json_get(root, k);
    if (!v || v->type == JSON_NULL) return 0;
    if (v->type != JSON_NUMBER || !(v->num >= lo && v->num <= hi))
        return inb_bad(c, k, "'%s' must be a number between %g and %g.", k, lo, hi);
    *has = 1;
    *out = v->num;
    return 0;
}

int inb_integer(in_ctx *c, const json_value *v, const char *k, long lo, long hi, long *out)
{
    if (!v || v->type == JSON_NULL) return 0;
    if (v->type != JSON_NUMBER || !v->is_int || v->i64 < lo || v->i64 > hi)
        return inb_bad(c, k, "'%s' must be an integer between %ld and %ld.", k, lo, hi);
    *out = (long)v->i64;
    return 1;
}

static int stops(in_ctx *c, const json_value *v, const char *k)
{
    if (!v || v->type == JSON_NULL) return 0;
    if (v->type == JSON_STRING) { c->r->stop[c->r->nstop++] = S(v); return 0; }
    if (v->type != JSON_ARRAY || v->count > CHAT_MAX_STOP)
        return inb_bad(c, k, "'%s' must be a string or an array of at most %d strings.", k, CHAT_MAX_STOP);
    for (const json_value *s = v->first; s; s = s->next) {
        if (s->type != JSON_STRING) return inb_bad(c, k, "'%s' entries must be strings.", k);
        c->r->stop[c->r->nstop++] = S(s);
    }
    return 0;
}

static int oai_sampling(in_ctx *c, const json_value *root)
{
    chat_req *r = c->r;
    long n = 1, x = 0;
    if (inb_number(c, root, "temperature", 0, 2, &r->has_temperature, &r->temperature) < 0 ||
        inb_number(c, root, "top_p", 0, 1, &r->has_top_p, &r->top_p) < 0) return -1;
    int got = inb_integer(c, json_get(root, "max_completion_tokens"), "max_completion_tokens", 1, 100000000, &r->max_tokens);
    if (got < 0) return -1;
    if (!got && inb_integer(c, json_get(root, "max_tokens"), "max_tokens", 1, 100000000, &r->max_tokens) < 0) return -1;
    if (inb_integer(c, json_get(root, "n"), "n", 1, 128, &n) < 0) return -1;
    if (n != 1) return inb_bad(c, "n", "Only n=1 is supported for this model's provider.");
    int s = inb_integer(c, json_get(root, "seed"), "seed", -2147483647L - 1, 2147483647L, &x);
    if (s < 0) return -1;
    if (s) { r->has_seed = 1; r->seed = x; }
    if (stops(c, json_get(root, "stop"), "stop") < 0) return -1;
    const json_value *rf = json_get(root, "response_format");
    if (rf && rf->type == JSON_OBJECT) {
        const char *t = json_get_str(rf, "type");
        if (t && !strcmp(t, "json_object")) r->response_format = RESPONSE_JSON_OBJECT;
        else if (t && !strcmp(t, "json_schema")) {
            const json_value *js = json_get(rf, "json_schema");
            const json_value *schema = js ? json_get(js, "schema") : NULL;
            if (!schema || schema->type != JSON_OBJECT) return inb_bad(c, "response_format", "'response_format.json_schema.schema' must be an object.");
            r->response_format = RESPONSE_JSON_SCHEMA;
            r->response_schema = schema;
            r->response_schema_name = S(json_get(js, "name"));
        } else if (!t || strcmp(t, "text")) return inb_bad(c, "response_format", "'response_format.type' must be text, json_object or json_schema.");
    }
    r->user = S(json_get(root, "user"));
    r->stream = json_get_bool(root, "stream");
    const json_value *so = json_get(root, "stream_options");
    r->include_usage = so && json_get_bool(so, "include_usage");
    return 0;
}

int chat_from_openai(const json_value *root, const char *src, int legacy_completion, chat_req *out,
                     char *msg, size_t msglen, const char **param)
{
    in_ctx c = { out, msg, msglen, param };
    *param = NULL;
    out->src = src;
    out->legacy_completion = legacy_completion;
    if (legacy_completion) {
        const json_value *p = json_get(root, "prompt");
        gw_str t = S(p);
        if (p && p->type == JSON_ARRAY && p->count == 1 && p->first->type == JSON_STRING) t = S(p->first);
        if (!t.p) return inb_bad(&c, "prompt", "'prompt' must be one string for this model's provider.");
        chat_msg *m = inb_add_msg(&c, ROLE_USER, 1);
        if (!m) return -1;
        m->parts[m->nparts++] = (chat_part){ .kind = PART_TEXT, .text = t };
        if (out->max_tokens < 0) out->max_tokens = 16;   /* the legacy API's default */
    } else {
        const json_value *msgs = json_get(root, "messages");
        size_t i = 0;
        if (!msgs || msgs->type != JSON_ARRAY) return inb_bad(&c, "messages", "'messages' must be a non-empty array.");
        for (const json_value *e = msgs->first; e; e = e->next, i++)
            if (oai_message(&c, e, i) < 0) return -1;
        if (out->nmsgs == 0) return inb_bad(&c, "messages", "'messages' needs at least one user or assistant message.");
        if (oai_tools(&c, root, src) < 0) return -1;
    }
    long keep = out->max_tokens;
    if (oai_sampling(&c, root) < 0) return -1;
    if (out->max_tokens < 0) out->max_tokens = keep;
    return 0;
}

/* ---- Anthropic Messages ---- */

static int an_image(in_ctx *c, const json_value *b, chat_part *p)
{
    const json_value *src = json_get(b, "source");
    const char *type = src ? json_get_str(src, "type") : NULL;
    *p = (chat_part){ .kind = PART_IMAGE };
    if (type && !strcmp(type, "base64")) {
        p->media_type = S(json_get(src, "media_type"));
        p->data = S(json_get(src, "data"));
        if (!p->media_type.p || !p->data.p) return inb_bad(c, "messages", "An image block needs 'source.media_type' and 'source.data'.");
        return 0;
    }
    if (type && !strcmp(type, "url")) {
        p->url = S(json_get(src, "url"));
        if (!p->url.p) return inb_bad(c, "messages", "An image block with a url source needs 'source.url'.");
        return 0;
    }
    return inb_bad(c, "messages", "Image sources must be of type base64 or url.");
}

static int an_message(in_ctx *c, const json_value *e, const char *src, size_t i)
{
    const char *role = json_get_str(e, "role");
    const json_value *content = json_get(e, "content");
    if (!role) return inb_bad(c, "messages", "messages.%zu.role: Field required.", i);
    int user = !strcmp(role, "user");
    if (!user && strcmp(role, "assistant")) return inb_bad(c, "messages", "messages.%zu.role: must be user or assistant.", i);
    if (!content || (content->type != JSON_STRING && content->type != JSON_ARRAY))
        return inb_bad(c, "messages", "messages.%zu.content: must be a string or an array of content blocks.", i);
    chat_role role_id = user ? ROLE_USER : ROLE_ASSISTANT;
    if (content->type == JSON_STRING) {
        chat_msg *m = inb_add_msg(c, role_id, 1);
        if (!m) return -1;
        m->parts[m->nparts++] = (chat_part){ .kind = PART_TEXT, .text = S(content) };
        return 0;
    }
    /* tool results become tool messages of their own; the rest stays together, in order */
    chat_msg *m = NULL;
    size_t k = 0;
    for (const json_value *b = content->first; b; b = b->next, k++) {
        const char *type = json_get_str(b, "type");
        if (!type) return inb_bad(c, "messages", "messages.%zu.content.%zu.type: Field required.", i, k);
        if (!strcmp(type, "tool_result")) {
            if (!user) return inb_bad(c, "messages", "messages.%zu: tool_result blocks belong in user messages.", i);
            gw_str id = S(json_get(b, "tool_use_id")), t;
            if (!id.p) return inb_bad(c, "messages", "messages.%zu.content.%zu.tool_use_id: Field required.", i, k);
            const json_value *rc = json_get(b, "content");
            if (rc && rc->type == JSON_ARRAY) {
                for (const json_value *x = rc->first; x; x = x->next) {
                    const char *xt = json_get_str(x, "type");
                    if (!xt || strcmp(xt, "text")) return inb_bad(c, "messages", "messages.%zu.content.%zu: only text tool results can be sent to this model's provider.", i, k);
                }
            }
            if (inb_text_of(c, rc, "messages", &t) < 0) return -1;
            chat_msg *tm = inb_add_msg(c, ROLE_TOOL, 1);
            if (!tm) return -1;
            tm->parts[tm->nparts++] = (chat_part){ .kind = PART_TOOL_RESULT, .id = id, .text = t,
                                                   .is_error = json_get_bool(b, "is_error") };
            m = NULL;   /* later blocks start a new message after the results */
            continue;
        }
        if (!m && !(m = inb_add_msg(c, role_id, content->count))) return -1;
        chat_part *p = &m->parts[m->nparts];
        if (!strcmp(type, "text")) {
            const json_value *t = json_get(b, "text");
            if (!t || t->type != JSON_STRING) return inb_bad(c, "messages", "messages.%zu.content.%zu.text: Field required.", i, k);
            *p = (chat_part){ .kind = PART_TEXT, .text = S(t) };
        } else if (!strcmp(type, "image")) {
            if (an_image(c, b, p) < 0) return -1;
        } else if (!strcmp(type, "tool_use")) {
            const json_value *input = json_get(b, "input");
            gw_str id = S(json_get(b, "id")), name = S(json_get(b, "name"));
            if (!id.p || !name.p || !input || input->type != JSON_OBJECT)
                return inb_bad(c, "messages", "messages.%zu.content.%zu: tool_use needs id, name and an input object.", i, k);
            *p = (chat_part){ .kind = PART_TOOL_CALL, .id = id, .name = name, .args = span(src, input) };
        } else if (!strcmp(type, "thinking") || !strcmp(type, "redacted_thinking")) {
            continue;   /* the model's own reasoning: other providers cannot take it back */
        } else {
            return inb_bad(c, "messages", "messages.%zu.content.%zu: blocks of type '%s' cannot be sent to this model's provider.", i, k, type);
        }
        m->nparts++;
    }
    return 0;
}

static int an_tools(in_ctx *c, const json_value *root, const char *src)
{
    const json_value *tools = json_get(root, "tools");
    if (tools && tools->type == JSON_ARRAY) {
        if (tools->count > MAX_TOOLS) return inb_bad(c, "tools", "Too many tools (at most %d).", MAX_TOOLS);
        if (!(c->r->tools = calloc(tools->count ? tools->count : 1, sizeof *c->r->tools))) return inb_bad(c, NULL, "Out of memory.");
        size_t k = 0;
        for (const json_value *t = tools->first; t; t = t->next, k++) {
            const char *type = json_get_str(t, "type");
            gw_str name = S(json_get(t, "name"));
            const json_value *schema = json_get(t, "input_schema");
            if ((type && strcmp(type, "custom")) || !name.p || !schema || schema->type != JSON_OBJECT)
                return inb_bad(c, "tools", "tools.%zu: only custom tools with a name and an input_schema can be sent to this model's provider.", k);
            c->r->tools[c->r->ntools++] = (chat_tool){ .name = name, .description = S(json_get(t, "description")),
                                                       .parameters = schema, .src = src };
        }
    } else if (tools && tools->type != JSON_NULL) {
        return inb_bad(c, "tools", "tools: Input should be a valid list.");
    }
    const json_value *tc = json_get(root, "tool_choice");
    if (tc && tc->type == JSON_OBJECT) {
        const char *type = json_get_str(tc, "type");
        if (!type) return inb_bad(c, "tool_choice", "tool_choice.type: Field required.");
        if (!strcmp(type, "auto")) c->r->tool_choice = TOOL_CHOICE_AUTO;
        else if (!strcmp(type, "any")) c->r->tool_choice = TOOL_CHOICE_REQUIRED;
        else if (!strcmp(type, "none")) c->r->tool_choice = TOOL_CHOICE_NONE;
        else if (!strcmp(type, "tool")) {
            c->r->tool_choice = TOOL_CHOICE_NAMED;
            c->r->tool_choice_name = S(json_get(tc, "name"));
            if (!c->r->tool_choice_name.p) return inb_bad(c, "tool_choice", "tool_choice.name: Field required.");
        } else return inb_bad(c, "tool_choice", "tool_choice.type: must be auto, any, tool or none.");
        if (json_get_bool(tc, "disable_parallel_tool_use")) c->r->parallel_tool_calls = 0;
    }
    return 0;
}

int chat_from_anthropic(const json_value *root, const char *src, chat_req *out,
                        char *msg, size_t msglen, const char **param)
{
    in_ctx c = { out, msg, msglen, param };
    *param = NULL;
    out->src = src;
    const json_value *sys = json_get(root, "system");
    if (sys && sys->type != JSON_NULL) {
        gw_str t = { NULL, 0 };
        if (inb_text_of(&c, sys, "system", &t) < 0) return -1;
        if (inb_append_system(&c, t.p, t.n) < 0) return -1;
    }
    const json_value *msgs = json_get(root, "messages");
    size_t i = 0;
    if (!msgs || msgs->type != JSON_ARRAY) return inb_bad(&c, "messages", "messages: Input should be a valid list.");
    for (const json_value *e = msgs->first; e; e = e->next, i++)
        if (an_message(&c, e, src, i) < 0) return -1;
    if (out->nmsgs == 0) return inb_bad(&c, "messages", "messages: at least one message is required.");
    if (an_tools(&c, root, src) < 0) return -1;
    if (inb_number(&c, root, "temperature", 0, 1, &out->has_temperature, &out->temperature) < 0 ||
        inb_number(&c, root, "top_p", 0, 1, &out->has_top_p, &out->top_p) < 0) return -1;
    long x = 0;
    int got = inb_integer(&c, json_get(root, "top_k"), "top_k", 1, 1000000, &x);
    if (got < 0) return -1;
    if (got) { out->has_top_k = 1; out->top_k = x; }
    if (inb_integer(&c, json_get(root, "max_tokens"), "max_tokens", 1, 100000000, &out->max_tokens) <= 0)
        return inb_bad(&c, "max_tokens", "max_tokens: Field required (a positive integer).");
    if (stops(&c, json_get(root, "stop_sequences"), "stop_sequences") < 0) return -1;
    const json_value *md = json_get(root, "metadata");
    if (md && md->type == JSON_OBJECT) out->user = S(json_get(md, "user_id"));
    out->stream = json_get_bool(root, "stream");
    out->include_usage = 1;   /* Anthropic streams always carry usage */
    return 0;
}
