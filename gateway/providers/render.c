/* render: answers and streams written in the client's dialect (OpenAI chat
 * completions, legacy completions, Anthropic Messages; Responses in
 * render_responses.c), from the internal
 * chat_resp and chat_event forms whatever provider produced them. */
#include "chat.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

/* Tool arguments are JSON object text from a provider: written as they are
 * when they parse as an object, else as {} (an SDK must never choke on them). */
static void put_args_object(buf_t *out, const char *s, size_t n)
{
    json_limits lim = { .max_depth = 64, .max_bytes = 0 };
    json_doc *d = n ? json_parse(s, n, &lim, NULL) : NULL;
    if (d && json_root(d)->type == JSON_OBJECT) buf_append(out, s, n);
    else buf_puts(out, "{}");
    json_doc_free(d);
}

static long input_uncached(const usage_t *u)
{
    long v = u->prompt_tokens - u->cached_tokens;
    return v < 0 ? 0 : v;
}

static void openai_usage(buf_t *out, const usage_t *u)
{
    buf_puts(out, "\"usage\":{\"prompt_tokens\":");
    buf_put_i64(out, u->prompt_tokens);
    buf_puts(out, ",\"completion_tokens\":");
    buf_put_i64(out, u->completion_tokens);
    buf_puts(out, ",\"total_tokens\":");
    buf_put_i64(out, u->prompt_tokens + u->completion_tokens);
    buf_puts(out, ",\"prompt_tokens_details\":{\"cached_tokens\":");
    buf_put_i64(out, u->cached_tokens);
    buf_puts(out, "}}");
}

static void anthropic_usage(buf_t *out, const usage_t *u)
{
    buf_puts(out, "\"usage\":{\"input_tokens\":");
    buf_put_i64(out, input_uncached(u));
    buf_puts(out, ",\"cache_creation_input_tokens\":0,\"cache_read_input_tokens\":");
    buf_put_i64(out, u->cached_tokens);
    buf_puts(out, ",\"output_tokens\":");
    buf_put_i64(out, u->completion_tokens);
    buf_putc(out, '}');
}

static void str_member(buf_t *out, const char *name, const char *v)
{
    buf_puts(out, name);
    buf_json_str(out, v, strlen(v));
}

int chat_render_response(chat_client cl, const chat_resp *r, const char *id, const char *model, buf_t *out)
{
    long created = (long)time(NULL);
    if (cl == CLIENT_OPENAI_RESPONSES) return rsp_render_response(r, id, model, NULL, created, out);
    if (cl == CLIENT_ANTHROPIC) {
        str_member(out, "{\"id\":", id);
        str_member(out, ",\"type\":\"message\",\"role\":\"assistant\",\"model\":", model);
        buf_puts(out, ",\"content\":[");
        int first = 1;
        if (r->text.len || r->ncalls == 0) {
            buf_puts(out, "{\"type\":\"text\",\"text\":");
            buf_json_str(out, r->text.data ? r->text.data : "", r->text.len);
            buf_putc(out, '}');
            first = 0;
        }
        for (size_t i = 0; i < r->ncalls; i++) {
            buf_puts(out, first ? "{\"type\":\"tool_use\",\"id\":" : ",{\"type\":\"tool_use\",\"id\":");
            buf_json_str(out, r->calls[i].id, strlen(r->calls[i].id));
            str_member(out, ",\"name\":", r->calls[i].name);
            buf_puts(out, ",\"input\":");
            put_args_object(out, r->calls[i].args.data, r->calls[i].args.len);
            buf_putc(out, '}');
            first = 0;
        }
        str_member(out, "],\"stop_reason\":", chat_finish_anthropic(r->finish));
        buf_puts(out, ",\"stop_sequence\":null,");
        anthropic_usage(out, &r->usage);
        buf_putc(out, '}');
        return out->oom ? -1 : 0;
    }
    int legacy = cl == CLIENT_OPENAI_COMPLETIONS;
    str_member(out, "{\"id\":", id);
    buf_puts(out, legacy ? ",\"object\":\"text_completion\",\"created\":" : ",\"object\":\"chat.completion\",\"created\":");
    buf_put_i64(out, created);
    str_member(out, ",\"model\":", model);
    if (legacy) {
        buf_puts(out, ",\"choices\":[{\"index\":0,\"text\":");
        buf_json_str(out, r->text.data ? r->text.data : "", r->text.len);
    } else {
        buf_puts(out, ",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":");
        if (r->text.len || r->ncalls == 0) buf_json_str(out, r->text.data ? r->text.data : "", r->text.len);
        else buf_puts(out, "null");
        if (r->ncalls) {
            buf_puts(out, ",\"tool_calls\":[");
            for (size_t i = 0; i < r->ncalls; i++) {
                buf_puts(out, i ? ",{\"id\":" : "{\"id\":");
                buf_json_str(out, r->calls[i].id, strlen(r->calls[i].id));
                str_member(out, ",\"type\":\"function\",\"function\":{\"name\":", r->calls[i].name);
                buf_puts(out, ",\"arguments\":");
                buf_json_str(out, r->calls[i].args.data ? r->calls[i].args.data : "", r->calls[i].args.len);
                buf_puts(out, "}}");
            }
            buf_putc(out, ']');
        }
        buf_puts(out, ",\"refusal\":null}");
    }
    str_member(out, ",\"logprobs\":null,\"finish_reason\":", chat_finish_openai(r->finish));
    buf_puts(out, "}],");
    openai_usage(out, &r->usage);
    buf_putc(out, '}');
    return out->oom ? -1 : 0;
}

/* ---- streams ---- */

void chat_enc_init(chat_enc *e, chat_client cl, const char *id, const char *model, int include_usage)
{
    memset(e, 0, sizeof *e);
    e->cl = cl;
    e->model = model;
    snprintf(e->id, sizeof e->id, "%s", id);
    e->created = (long)time(NULL);
    e->include_usage = include_usage;
    if (cl == CLIENT_OPENAI_RESPONSES) rsp_enc_start(e);
}

/* OpenAI: "data: {chunk head ... "choices":[" */
static void oai_chunk_head(chat_enc *e, buf_t *out)
{
    str_member(out, "data: {\"id\":", e->id);
    buf_puts(out, e->cl == CLIENT_OPENAI_COMPLETIONS ? ",\"object\":\"text_completion\",\"created\":"
                                                      : ",\"object\":\"chat.completion.chunk\",\"created\":");
    buf_put_i64(out, e->created);
    str_member(out, ",\"model\":", e->model);
    buf_puts(out, ",\"choices\":[");
}

static void oai_delta(chat_enc *e, buf_t *out, const char *delta_json_body, const char *finish)
{
    oai_chunk_head(e, out);
    if (e->cl == CLIENT_OPENAI_COMPLETIONS) {
        buf_puts(out, "{\"index\":0,\"text\":");
        buf_puts(out, delta_json_body);   /* a JSON string here */
        buf_puts(out, ",\"logprobs\":null,\"finish_reason\":");
    } else {
        buf_puts(out, "{\"index\":0,\"delta\":{");
        buf_puts(out, delta_json_body);
        buf_puts(out, "},\"logprobs\":null,\"finish_reason\":");
    }
    if (finish) { buf_putc(out, '"'); buf_puts(out, finish); buf_putc(out, '"'); }
    else buf_puts(out, "null");
    buf_puts(out, "}]}\n\n");
}

static void oai_start(chat_enc *e, buf_t *out)
{
    if (e->started) return;
    e->started = 1;
    if (e->cl == CLIENT_OPENAI_CHAT) oai_delta(e, out, "\"role\":\"assistant\",\"content\":\"\"", NULL);
}

static void oai_event(chat_enc *e, const chat_event *ev, buf_t *out)
{
    buf_t d; buf_init(&d);
    oai_start(e, out);
    switch (ev->type) {
    case CEV_TEXT:
        if (e->cl == CLIENT_OPENAI_CHAT) buf_puts(&d, "\"content\":");
        buf_json_str(&d, ev->text.p, ev->text.n);
        if (!d.oom) oai_delta(e, out, d.data, NULL);
        break;
    case CEV_TOOL_START:
        if (e->cl != CLIENT_OPENAI_CHAT) break;
        buf_puts(&d, "\"tool_calls\":[{\"index\":");
        buf_put_i64(&d, ev->index);
        buf_puts(&d, ",\"id\":");
        buf_json_str(&d, ev->id.p, ev->id.n);
        buf_puts(&d, ",\"type\":\"function\",\"function\":{\"name\":");
        buf_json_str(&d, ev->name.p, ev->name.n);
        buf_puts(&d, ",\"arguments\":\"\"}}]");
        if (!d.oom) oai_delta(e, out, d.data, NULL);
        e->ntools++;
        break;
    case CEV_TOOL_ARGS:
        if (e->cl != CLIENT_OPENAI_CHAT) break;
        buf_puts(&d, "\"tool_calls\":[{\"index\":");
        buf_put_i64(&d, ev->index);
        buf_puts(&d, ",\"function\":{\"arguments\":");
        buf_json_str(&d, ev->text.p, ev->text.n);
        buf_puts(&d, "}}]");
        if (!d.oom) oai_delta(e, out, d.data, NULL);
        break;
    case CEV_FINISH:
        if (e->finished) break;
        e->finished = 1;
        e->finish = ev->finish;
        oai_delta(e, out, e->cl == CLIENT_OPENAI_CHAT ? "" : "\"\"", chat_finish_openai(ev->finish));
        break;
    case CEV_USAGE:
    case CEV_ERROR:
        break;
    }
    buf_free(&d);
}

static void an_event_head(buf_t *out, const char *name)
{
    buf_puts(out, "event: ");
    buf_puts(out, name);
    buf_puts(out, "\ndata: {\"type\":\"");
    buf_puts(out, name);
    buf_puts(out, "\"");
}

static void an_start(chat_enc *e, buf_t *out)
{
    if (e->started) return;
    e->started = 1;
    an_event_head(out, "message_start");
    str_member(out, ",\"message\":{\"id\":", e->id);
    str_member(out, ",\"type\":\"message\",\"role\":\"assistant\",\"model\":", e->model);
    buf_puts(out, ",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,");
    anthropic_usage(out, &e->usage);
    buf_puts(out, "}}\n\n");
}

static void an_close_block(chat_enc *e, buf_t *out)
{
    if (!e->block_open) return;
    an_event_head(out, "content_block_stop");
    buf_puts(out, ",\"index\":");
    buf_put_i64(out, e->next_block - 1);
    buf_puts(out, "}\n\n");
    e->block_open = 0;
}

static void an_open_block(chat_enc *e, buf_t *out, const chat_event *tool)
{
    an_close_block(e, out);
    an_event_head(out, "content_block_start");
    buf_puts(out, ",\"index\":");
    buf_put_i64(out, e->next_block++);
    if (tool) {
        buf_puts(out, ",\"content_block\":{\"type\":\"tool_use\",\"id\":");
        buf_json_str(out, tool->id.p, tool->id.n);
        buf_puts(out, ",\"name\":");
        buf_json_str(out, tool->name.p, tool->name.n);
        buf_puts(out, ",\"input\":{}}}\n\n");
    } else {
        buf_puts(out, ",\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n");
    }
    e->block_open = 1;
    e->block_tool = tool != NULL;
    e->block_tool_index = tool ? tool->index : -1;
}

static void an_delta(chat_enc *e, buf_t *out, const char *kind, const char *field, gw_str s)
{
    an_event_head(out, "content_block_delta");
    buf_puts(out, ",\"index\":");
    buf_put_i64(out, e->next_block - 1);
    buf_puts(out, ",\"delta\":{\"type\":\"");
    buf_puts(out, kind);
    buf_puts(out, "\",\"");
    buf_puts(out, field);
    buf_puts(out, "\":");
    buf_json_str(out, s.p, s.n);
    buf_puts(out, "}}\n\n");
}

static void an_event(chat_enc *e, const chat_event *ev, buf_t *out)
{
    switch (ev->type) {
    case CEV_TEXT:
        an_start(e, out);
        if (!e->block_open || e->block_tool) an_open_block(e, out, NULL);
        an_delta(e, out, "text_delta", "text", ev->text);
        break;
    case CEV_TOOL_START:
        an_start(e, out);
        an_open_block(e, out, ev);
        e->ntools++;
        break;
    case CEV_TOOL_ARGS:
        /* arguments of a call whose block is closed cannot be placed any more */
        if (e->block_open && e->block_tool && e->block_tool_index == ev->index)
            an_delta(e, out, "input_json_delta", "partial_json", ev->text);
        break;
    case CEV_FINISH:
        e->finished = 1;
        e->finish = ev->finish;
        break;
    case CEV_USAGE:
    case CEV_ERROR:
        break;
    }
}

void chat_enc_event(chat_enc *e, const chat_event *ev, buf_t *out)
{
    if (ev->type == CEV_USAGE) {
        if (ev->prompt_tokens >= 0) e->usage.prompt_tokens = ev->prompt_tokens;
        if (ev->completion_tokens >= 0) e->usage.completion_tokens = ev->completion_tokens;
        if (ev->cached_tokens >= 0) e->usage.cached_tokens = ev->cached_tokens;
        e->usage.present = 1;
        return;
    }
    if (ev->type == CEV_TEXT && ev->text.n == 0) return;
    if (e->cl == CLIENT_OPENAI_RESPONSES) rsp_enc_event(e, ev, out);
    else if (e->cl == CLIENT_ANTHROPIC) an_event(e, ev, out);
    else oai_event(e, ev, out);
}

void chat_enc_end(chat_enc *e, const char *error, buf_t *out)
{
    if (e->cl == CLIENT_OPENAI_RESPONSES) { rsp_enc_end(e, error, out); return; }
    if (e->cl == CLIENT_ANTHROPIC) {
        if (!error) {
            an_start(e, out);
            an_close_block(e, out);
            an_event_head(out, "message_delta");
            str_member(out, ",\"delta\":{\"stop_reason\":",
                       chat_finish_anthropic(e->finished ? e->finish : (e->ntools ? FINISH_TOOL_CALLS : FINISH_STOP)));
            buf_puts(out, ",\"stop_sequence\":null},");
            anthropic_usage(out, &e->usage);
            buf_puts(out, "}\n\nevent: message_stop\ndata: {\"type\":\"message_stop\"}\n\n");
        } else {
            buf_puts(out, "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"api_error\",\"message\":");
            buf_json_str(out, error, strlen(error));
            buf_puts(out, "}}\n\n");
        }
        return;
    }
    if (error) {
        buf_puts(out, "data: {\"error\":{\"message\":");
        buf_json_str(out, error, strlen(error));
        buf_puts(out, ",\"type\":\"upstream_error\",\"code\":\"upstream_stream_error\",\"param\":null}}\n\n");
        return;
    }
    oai_start(e, out);
    if (!e->finished) {
        chat_event f = { .type = CEV_FINISH, .finish = e->ntools ? FINISH_TOOL_CALLS : FINISH_STOP };
        oai_event(e, &f, out);
    }
    if (e->include_usage) {
        oai_chunk_head(e, out);
        buf_puts(out, "],");
        openai_usage(out, &e->usage);
        buf_puts(out, "}\n\n");
    }
    buf_puts(out, "data: [DONE]\n\n");
}
