/* responses_in: an OpenAI Responses request (/v1/responses) parsed into the
 * internal chat_req, so it reaches every provider through the chat form.
 *
 * Input items become messages (message, function_call, function_call_output;
 * a function_call joins the assistant message before it), instructions and
 * system/developer messages the system prompt, flat function tools the tools,
 * text.format the response format. What cannot be carried (built-in tools,
 * files, background mode) is a 400 naming the parameter. Besides the chat,
 * the request keeps what its answer echoes and its input items as JSON (a
 * stored answer keeps them for previous_response_id). */
#include "chat.h"
#include "inbound_util.h"
#include "provider.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_METADATA     16
#define MAX_META_KEY     64
#define MAX_META_VALUE   512
#define MAX_RESP_ID      128

/* Client JSON is copied compactly: echoed members go into SSE data lines,
 * where a raw newline would end the event. */
static const char *const keep_all[] = { NULL };
static void put_compact(buf_t *b, const char *src, const json_value *v) { provider_put_json_without(b, src, v, keep_all); }

void chat_responses_free(chat_responses *x)
{
    if (!x) return;
    buf_free(&x->echo);
    buf_free(&x->input);
    json_doc_free(x->prev);
    free(x->prev_src);
    free(x);
}

/* Appends one part to m (parts grow one at a time: an item adds one). */
static int push_part(in_ctx *c, chat_msg *m, chat_part p)
{
    if (m->nparts >= MAX_PARTS) return inb_bad(c, "input", "Too many content parts in one message (at most %d).", MAX_PARTS);
    chat_part *np = realloc(m->parts, (m->nparts + 1) * sizeof *np);
    if (!np) return inb_bad(c, NULL, "Out of memory.");
    m->parts = np;
    m->parts[m->nparts++] = p;
    return 0;
}

static int is(const char *s, const char *lit) { return s && !strcmp(s, lit); }

/* One content part of a user (input_*) or assistant (output_text, refusal) message. */
static int content_part(in_ctx *c, const json_value *p, int assistant, chat_msg *m, size_t i)
{
    const char *type = json_get_str(p, "type");
    const json_value *t = json_get(p, "text");
    if (is(type, "input_text") || is(type, "output_text") || is(type, "text")) {
        if (!t || t->type != JSON_STRING) return inb_bad(c, "input", "input[%zu]: a %s part needs a string 'text'.", i, type);
        return push_part(c, m, (chat_part){ .kind = PART_TEXT, .text = S(t) });
    }
    if (is(type, "refusal") && assistant) {
        gw_str r = S(json_get(p, "refusal"));
        return r.p ? push_part(c, m, (chat_part){ .kind = PART_TEXT, .text = r }) : 0;
    }
    if (is(type, "input_image") && !assistant) {
        const json_value *iu = json_get(p, "image_url");
        gw_str url = S(iu && iu->type == JSON_OBJECT ? json_get(iu, "url") : iu);
        if (!url.p) return inb_bad(c, "input", "input[%zu]: an input_image part needs 'image_url' (file_id is not supported).", i);
        chat_part part = { .kind = PART_IMAGE };
        int d = inb_split_data_url(url, &part);
        if (d < 0) return inb_bad(c, "input", "input[%zu]: image data URLs must be base64 ('data:<type>;base64,...').", i);
        if (!d) part.url = url;
        return push_part(c, m, part);
    }
    return inb_bad(c, "input", "input[%zu]: content parts of type '%s' cannot be sent to this model's provider.", i,
                   type ? type : "(none)");
}

static int message_item(in_ctx *c, const json_value *e, size_t i)
{
    const char *role = json_get_str(e, "role");
    const json_value *content = json_get(e, "content");
    if (!role) return inb_bad(c, "input", "input[%zu]: a message needs a string 'role'.", i);
    if (!content || (content->type != JSON_STRING && content->type != JSON_ARRAY))
        return inb_bad(c, "input", "input[%zu].content must be a string or an array of content parts.", i);
    if (is(role, "system") || is(role, "developer")) {
        gw_str t;
        if (content->type == JSON_ARRAY)
            for (const json_value *p = content->first; p; p = p->next)
                if (!is(json_get_str(p, "type"), "input_text"))
                    return inb_bad(c, "input", "input[%zu]: %s messages take input_text parts only.", i, role);
        if (inb_text_of(c, content, "input", &t) < 0) return -1;
        return inb_append_system(c, t.p, t.n);
    }
    int assistant = is(role, "assistant");
    if (!assistant && !is(role, "user")) return inb_bad(c, "input", "input[%zu].role must be user, assistant, system or developer.", i);
    if (content->type == JSON_ARRAY && content->count > MAX_PARTS)
        return inb_bad(c, "input", "Too many content parts in one message (at most %d).", MAX_PARTS);
    chat_msg *m = inb_add_msg(c, assistant ? ROLE_ASSISTANT : ROLE_USER, 0);
    if (!m) return -1;
    if (content->type == JSON_STRING) return push_part(c, m, (chat_part){ .kind = PART_TEXT, .text = S(content) });
    for (const json_value *p = content->first; p; p = p->next)
        if (content_part(c, p, assistant, m, i) < 0) return -1;
    return 0;
}

static int call_item(in_ctx *c, const json_value *e, size_t i)
{
    gw_str id = S(json_get(e, "call_id")), name = S(json_get(e, "name")), args = S(json_get(e, "arguments"));
    if (!id.p || !id.n || !name.p || !name.n)
        return inb_bad(c, "input", "input[%zu]: a function_call item needs 'call_id', 'name' and 'arguments'.", i);
    if (!args.p || !args.n) args = (gw_str){ "{}", 2 };
    chat_req *r = c->r;
    chat_msg *m = r->nmsgs && r->msgs[r->nmsgs - 1].role == ROLE_ASSISTANT ? &r->msgs[r->nmsgs - 1] : NULL;
    if (!m && !(m = inb_add_msg(c, ROLE_ASSISTANT, 0))) return -1;
    return push_part(c, m, (chat_part){ .kind = PART_TOOL_CALL, .id = id, .name = name, .args = args });
}

static int call_output_item(in_ctx *c, const json_value *e, size_t i)
{
    gw_str id = S(json_get(e, "call_id")), t;
    const json_value *out = json_get(e, "output");
    if (!id.p || !id.n) return inb_bad(c, "input", "input[%zu]: a function_call_output item needs 'call_id'.", i);
    if (!out || (out->type != JSON_STRING && out->type != JSON_ARRAY))
        return inb_bad(c, "input", "input[%zu].output must be a string or an array of input_text parts.", i);
    if (out->type == JSON_ARRAY)
        for (const json_value *p = out->first; p; p = p->next)
            if (!is(json_get_str(p, "type"), "input_text"))
                return inb_bad(c, "input", "input[%zu].output: only input_text parts can be sent to this model's provider.", i);
    if (inb_text_of(c, out, "input", &t) < 0) return -1;
    chat_msg *m = inb_add_msg(c, ROLE_TOOL, 1);
    if (!m) return -1;
    m->parts[m->nparts++] = (chat_part){ .kind = PART_TOOL_RESULT, .id = id, .text = t };
    return 0;
}

/* The items of one input array; each item's bytes (from src) go to the
 * conversation's input. *n counts items over every array, for messages. */
static int items(in_ctx *c, const json_value *arr, const char *src, size_t *n)
{
    buf_t *in = &c->r->responses->input;
    for (const json_value *e = arr->first; e; e = e->next, (*n)++) {
        size_t i = *n;
        if (i >= MAX_MESSAGES) return inb_bad(c, "input", "Too many input items (at most %d).", MAX_MESSAGES);
        if (e->type != JSON_OBJECT) return inb_bad(c, "input", "input[%zu] must be an object.", i);
        const char *type = json_get_str(e, "type");
        int rc;
        if (!type || is(type, "message")) rc = message_item(c, e, i);
        else if (is(type, "function_call")) rc = call_item(c, e, i);
        else if (is(type, "function_call_output")) rc = call_output_item(c, e, i);
        else if (is(type, "reasoning")) rc = 0;   /* the model's own reasoning: other providers cannot take it back */
        else rc = inb_bad(c, "input", "input[%zu]: items of type '%s' cannot be sent to this model's provider.", i, type);
        if (rc < 0) return -1;
        if (in->len > 1) buf_putc(in, ',');
        put_compact(in, src, e);
    }
    return 0;
}

static int input(in_ctx *c, const json_value *root, const char *src, const json_value *prev, const char *prev_src)
{
    buf_t *in = &c->r->responses->input;
    size_t n = 0;
    buf_putc(in, '[');
    if (prev) {   /* the stored conversation: its input items, then the answer's output items */
        const json_value *pi = json_get(prev, "input"), *pr = json_get(prev, "response");
        const json_value *po = pr ? json_get(pr, "output") : NULL;
        if (pi && pi->type == JSON_ARRAY && items(c, pi, prev_src, &n) < 0) return -1;
        if (po && po->type == JSON_ARRAY && items(c, po, prev_src, &n) < 0) return -1;
    }
    const json_value *v = json_get(root, "input");
    if (v && v->type == JSON_STRING) {
        chat_msg *m = inb_add_msg(c, ROLE_USER, 1);
        if (!m) return -1;
        m->parts[m->nparts++] = (chat_part){ .kind = PART_TEXT, .text = S(v) };
        if (in->len > 1) buf_putc(in, ',');
        buf_puts(in, "{\"type\":\"message\",\"role\":\"user\",\"content\":[{\"type\":\"input_text\",\"text\":");
        buf_json_str(in, v->str, v->str_len);
        buf_puts(in, "}]}");
    } else if (v && v->type == JSON_ARRAY) {
        if (items(c, v, src, &n) < 0) return -1;
    } else if (v && v->type != JSON_NULL) {
        return inb_bad(c, "input", "'input' must be a string or an array of input items.");
    }
    buf_putc(in, ']');
    if (in->oom) return inb_bad(c, NULL, "Out of memory.");
    if (c->r->nmsgs == 0) return inb_bad(c, "input", "'input' needs at least one user or assistant message.");
    return 0;
}

static int tools(in_ctx *c, const json_value *root, const char *src)
{
    chat_req *r = c->r;
    const json_value *tl = json_get(root, "tools");
    if (tl && tl->type != JSON_NULL) {
        if (tl->type != JSON_ARRAY) return inb_bad(c, "tools", "'tools' must be an array.");
        if (tl->count > MAX_TOOLS) return inb_bad(c, "tools", "Too many tools (at most %d).", MAX_TOOLS);
        if (!(r->tools = calloc(tl->count ? tl->count : 1, sizeof *r->tools))) return inb_bad(c, NULL, "Out of memory.");
        size_t k = 0;
        for (const json_value *t = tl->first; t; t = t->next, k++) {
            const char *type = json_get_str(t, "type");
            if (!is(type, "function"))
                return inb_bad(c, "tools", "tools[%zu]: built-in tools (type '%s') are not supported by this gateway; "
                               "only function tools ({\"type\":\"function\",\"name\":...}) can be sent to a provider.",
                               k, type ? type : "(none)");
            gw_str name = S(json_get(t, "name"));
            if (!name.p || !name.n) return inb_bad(c, "tools", "tools[%zu]: a function tool needs a string 'name'.", k);
            const json_value *params = json_get(t, "parameters");
            if (params && params->type == JSON_NULL) params = NULL;
            if (params && params->type != JSON_OBJECT) return inb_bad(c, "tools", "tools[%zu].parameters must be an object.", k);
            r->tools[r->ntools++] = (chat_tool){ .name = name, .description = S(json_get(t, "description")),
                                                 .parameters = params, .src = src };
        }
    }
    const json_value *tc = json_get(root, "tool_choice");
    if (tc && tc->type == JSON_STRING) {
        if (!strcmp(tc->str, "auto")) r->tool_choice = TOOL_CHOICE_AUTO;
        else if (!strcmp(tc->str, "none")) r->tool_choice = TOOL_CHOICE_NONE;
        else if (!strcmp(tc->str, "required")) r->tool_choice = TOOL_CHOICE_REQUIRED;
        else return inb_bad(c, "tool_choice", "'tool_choice' must be auto, none, required or {\"type\":\"function\",\"name\":...}.");
    } else if (tc && tc->type == JSON_OBJECT) {
        gw_str name = S(json_get(tc, "name"));
        if (!is(json_get_str(tc, "type"), "function") || !name.p)
            return inb_bad(c, "tool_choice", "'tool_choice' objects must be {\"type\":\"function\",\"name\":...} here.");
        r->tool_choice = TOOL_CHOICE_NAMED;
        r->tool_choice_name = name;
    } else if (tc && tc->type != JSON_NULL) {
        return inb_bad(c, "tool_choice", "'tool_choice' must be a string or an object.");
    }
    const json_value *ptc = json_get(root, "parallel_tool_calls");
    if (ptc && ptc->type != JSON_NULL && ptc->type != JSON_TRUE && ptc->type != JSON_FALSE)
        return inb_bad(c, "parallel_tool_calls", "'parallel_tool_calls' must be a boolean.");
    if (ptc && ptc->type != JSON_NULL) r->parallel_tool_calls = ptc->type == JSON_TRUE;
    return 0;
}

static int text_format(in_ctx *c, const json_value *root)
{
    const json_value *text = json_get(root, "text");
    if (!text || text->type == JSON_NULL) return 0;
    if (text->type != JSON_OBJECT) return inb_bad(c, "text", "'text' must be an object.");
    const json_value *f = json_get(text, "format");
    if (!f || f->type == JSON_NULL) return 0;
    const char *t = f->type == JSON_OBJECT ? json_get_str(f, "type") : NULL;
    if (is(t, "text")) return 0;
    if (is(t, "json_object")) { c->r->response_format = RESPONSE_JSON_OBJECT; return 0; }
    if (is(t, "json_schema")) {
        const json_value *schema = json_get(f, "schema");
        if (!schema || schema->type != JSON_OBJECT) return inb_bad(c, "text.format.schema", "'text.format.schema' must be an object.");
        c->r->response_format = RESPONSE_JSON_SCHEMA;
        c->r->response_schema = schema;
        c->r->response_schema_name = S(json_get(f, "name"));
        return 0;
    }
    return inb_bad(c, "text.format", "'text.format.type' must be text, json_object or json_schema.");
}

static int metadata(in_ctx *c, const json_value *md)
{
    if (!md || md->type == JSON_NULL) return 0;
    if (md->type != JSON_OBJECT || md->count > MAX_METADATA)
        return inb_bad(c, "metadata", "'metadata' must be an object of at most %d string values.", MAX_METADATA);
    for (const json_value *m = md->first; m; m = m->next)
        if (m->key_len > MAX_META_KEY || m->type != JSON_STRING || m->str_len > MAX_META_VALUE)
            return inb_bad(c, "metadata", "'metadata' keys are at most %d characters and values strings of at most %d.",
                           MAX_META_KEY, MAX_META_VALUE);
    return 0;
}

/* One echoed member: the client's bytes, or the API's default when absent. */
static void echo(buf_t *b, const char *name, const char *src, const json_value *v, const char *dflt)
{
    buf_puts(b, ",\"");
    buf_puts(b, name);
    buf_puts(b, "\":");
    if (v && v->type != JSON_NULL) put_compact(b, src, v);
    else buf_puts(b, dflt);
}

static void build_echo(chat_responses *x, const json_value *root, const char *src, const chat_req *r)
{
    buf_t *b = &x->echo;
    const json_value *text = json_get(root, "text");
    const json_value *fmt = text && text->type == JSON_OBJECT ? json_get(text, "format") : NULL;
    echo(b, "instructions", src, json_get(root, "instructions"), "null");
    echo(b, "max_output_tokens", src, json_get(root, "max_output_tokens"), "null");
    buf_puts(b, ",\"max_tool_calls\":null");
    echo(b, "metadata", src, json_get(root, "metadata"), "{}");
    buf_puts(b, r->parallel_tool_calls == 0 ? ",\"parallel_tool_calls\":false" : ",\"parallel_tool_calls\":true");
    echo(b, "previous_response_id", src, json_get(root, "previous_response_id"), "null");
    buf_puts(b, ",\"reasoning\":{\"effort\":null,\"summary\":null},\"service_tier\":\"default\"");
    buf_puts(b, x->store ? ",\"store\":true" : ",\"store\":false");
    echo(b, "temperature", src, json_get(root, "temperature"), "1.0");
    buf_puts(b, ",\"text\":{\"format\":");
    if (fmt && fmt->type == JSON_OBJECT) put_compact(b, src, fmt);
    else buf_puts(b, "{\"type\":\"text\"}");
    buf_putc(b, '}');
    echo(b, "tool_choice", src, json_get(root, "tool_choice"), "\"auto\"");
    echo(b, "tools", src, json_get(root, "tools"), "[]");
    echo(b, "top_p", src, json_get(root, "top_p"), "1.0");
    buf_puts(b, ",\"truncation\":\"disabled\"");
    echo(b, "user", src, json_get(root, "user"), "null");
}

int chat_from_responses(const json_value *root, const char *src, const json_value *prev, const char *prev_src,
                        chat_req *out, char *msg, size_t msglen, const char **param)
{
    in_ctx c = { out, msg, msglen, param };
    *param = NULL;
    out->src = src;
    chat_responses *x = out->responses;
    if (!x) {
        if (!(x = calloc(1, sizeof *x))) return inb_bad(&c, NULL, "Out of memory.");
        buf_init(&x->echo);
        buf_init(&x->input);
        out->responses = x;
    }
    x->store = 1;
    if (root->type != JSON_OBJECT) return inb_bad(&c, NULL, "The request body must be a JSON object.");
    static const char *const refused[] = { "background", "conversation", "prompt", NULL };
    for (const char *const *k = refused; *k; k++) {
        const json_value *v = json_get(root, *k);
        if (v && v->type != JSON_NULL && v->type != JSON_FALSE)
            return inb_bad(&c, *k, "'%s' is not supported by this gateway.", *k);
    }
    const json_value *ins = json_get(root, "instructions");
    if (ins && ins->type != JSON_NULL) {
        if (ins->type != JSON_STRING) return inb_bad(&c, "instructions", "'instructions' must be a string.");
        if (inb_append_system(&c, ins->str, ins->str_len) < 0) return -1;
    }
    const json_value *st = json_get(root, "store");
    if (st && st->type != JSON_NULL && st->type != JSON_TRUE && st->type != JSON_FALSE)
        return inb_bad(&c, "store", "'store' must be a boolean.");
    x->store = !st || st->type != JSON_FALSE;
    const json_value *pid = json_get(root, "previous_response_id");
    if (pid && pid->type != JSON_NULL && (pid->type != JSON_STRING || pid->str_len == 0 || pid->str_len > MAX_RESP_ID))
        return inb_bad(&c, "previous_response_id", "'previous_response_id' must be a response id string.");
    if (input(&c, root, src, prev, prev_src) < 0) return -1;
    if (tools(&c, root, src) < 0) return -1;
    if (inb_number(&c, root, "temperature", 0, 2, &out->has_temperature, &out->temperature) < 0 ||
        inb_number(&c, root, "top_p", 0, 1, &out->has_top_p, &out->top_p) < 0) return -1;
    if (inb_integer(&c, json_get(root, "max_output_tokens"), "max_output_tokens", 1, 100000000, &out->max_tokens) < 0) return -1;
    if (text_format(&c, root) < 0 || metadata(&c, json_get(root, "metadata")) < 0) return -1;
    const json_value *user = json_get(root, "user");
    if (user && user->type != JSON_NULL && (user->type != JSON_STRING || user->str_len > 256))
        return inb_bad(&c, "user", "'user' must be a string of at most 256 characters.");
    out->user = S(user);
    out->stream = json_get_bool(root, "stream");
    out->include_usage = 1;   /* every Responses answer carries its usage */
    build_echo(x, root, src, out);
    if (x->echo.oom) return inb_bad(&c, NULL, "Out of memory.");
    return 0;
}
