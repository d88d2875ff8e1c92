/* render_responses: answers and streams in the OpenAI Responses dialect,
 * from the internal chat_resp and chat_event forms whatever provider
 * produced them.
 *
 * An answer is a response object whose output is a list of items: a message
 * (one output_text part) and function calls. A stream is the typed event
 * sequence (response.created, response.in_progress, output_item.added,
 * content_part.added, output_text.delta ... response.completed), each event
 * numbered; items are opened as the provider's events arrive and closed when
 * the next one starts or the stream ends, so nothing is buffered but the
 * text the closing events and the final response repeat. */
#include "chat.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define RSP_MAX_ITEMS (CHAT_MAX_TOOL_CALLS + 8)
#define RSP_MAX_TEXT  (32u << 20)   /* per item: kept for the closing events; beyond it they repeat a prefix */

typedef struct rsp_item {
    int    call;          /* function_call, else message */
    char  *call_id, *name;
    buf_t  text;          /* message text, or the call's arguments */
} rsp_item;

struct rsp_enc {
    long     seq;                            /* sequence_number of the next event */
    rsp_item items[RSP_MAX_ITEMS];
    size_t   n;
    int      cur;                            /* the open item, or -1 */
    int      tool_item[CHAT_MAX_TOOL_CALLS]; /* provider tool index -> item, -1 none */
    buf_t    final;                          /* the response object of a clean end */
    int      final_ok;
};

static const char *const default_echo =
    ",\"instructions\":null,\"max_output_tokens\":null,\"max_tool_calls\":null,\"metadata\":{},"
    "\"parallel_tool_calls\":true,\"previous_response_id\":null,\"reasoning\":{\"effort\":null,\"summary\":null},"
    "\"service_tier\":\"default\",\"store\":true,\"temperature\":1.0,\"text\":{\"format\":{\"type\":\"text\"}},"
    "\"tool_choice\":\"auto\",\"tools\":[],\"top_p\":1.0,\"truncation\":\"disabled\",\"user\":null";

/* "msg_<response id without resp_>_<k>" / "fc_..._<k>": stable, unique per response */
static void item_id(buf_t *b, const char *rid, int call, size_t k)
{
    if (!strncmp(rid, "resp_", 5)) rid += 5;
    buf_putc(b, '"');
    buf_puts(b, call ? "fc_" : "msg_");
    buf_puts(b, rid);   /* gateway-made ids: [A-Za-z0-9_] only */
    buf_putc(b, '_');
    buf_put_u64(b, k);
    buf_putc(b, '"');
}

static void put_usage(buf_t *b, const usage_t *u)
{
    buf_puts(b, "{\"input_tokens\":");
    buf_put_i64(b, u->prompt_tokens);
    buf_puts(b, ",\"input_tokens_details\":{\"cached_tokens\":");
    buf_put_i64(b, u->cached_tokens);
    buf_puts(b, "},\"output_tokens\":");
    buf_put_i64(b, u->completion_tokens);
    buf_puts(b, ",\"output_tokens_details\":{\"reasoning_tokens\":0},\"total_tokens\":");
    buf_put_i64(b, u->prompt_tokens + u->completion_tokens);
    buf_putc(b, '}');
}

static void put_text_part(buf_t *b, const char *s, size_t n)
{
    buf_puts(b, "{\"type\":\"output_text\",\"text\":");
    buf_json_str(b, s ? s : "", n);
    buf_puts(b, ",\"annotations\":[],\"logprobs\":[]}");
}

/* A message item; text NULL: the in-progress form (no content yet). */
static void put_msg_item(buf_t *b, const char *rid, size_t k, const char *status, const char *text, size_t n)
{
    buf_puts(b, "{\"id\":");
    item_id(b, rid, 0, k);
    buf_puts(b, ",\"type\":\"message\",\"status\":\"");
    buf_puts(b, status);
    buf_puts(b, "\",\"role\":\"assistant\",\"content\":[");
    if (text) put_text_part(b, text, n);
    buf_puts(b, "]}");
}

static void put_call_item(buf_t *b, const char *rid, size_t k, const char *status, const char *call_id,
                          const char *name, const char *args, size_t n)
{
    buf_puts(b, "{\"id\":");
    item_id(b, rid, 1, k);
    buf_puts(b, ",\"type\":\"function_call\",\"status\":\"");
    buf_puts(b, status);
    buf_puts(b, "\",\"arguments\":");
    buf_json_str(b, args ? args : "", n);
    buf_puts(b, ",\"call_id\":");
    buf_json_str(b, call_id, strlen(call_id));
    buf_puts(b, ",\"name\":");
    buf_json_str(b, name, strlen(name));
    buf_putc(b, '}');
}

static const char *finish_status(chat_finish f)
{
    return f == FINISH_LENGTH || f == FINISH_CONTENT_FILTER ? "incomplete" : "completed";
}

/* The response object. status "in_progress" / "failed" / from finish;
 * output: the items' JSON (without brackets); u NULL: usage null. */
static void put_response(buf_t *b, const char *id, const char *model, long created, const char *status,
                         chat_finish finish, const char *error, const buf_t *output, const usage_t *u, const char *echo)
{
    buf_puts(b, "{\"id\":");
    buf_json_str(b, id, strlen(id));
    buf_puts(b, ",\"object\":\"response\",\"created_at\":");
    buf_put_i64(b, created);
    buf_puts(b, ",\"status\":\"");
    buf_puts(b, status);
    buf_puts(b, "\",\"background\":false,\"error\":");
    if (error) {
        buf_puts(b, "{\"code\":\"server_error\",\"message\":");
        buf_json_str(b, error, strlen(error));
        buf_putc(b, '}');
    } else {
        buf_puts(b, "null");
    }
    buf_puts(b, ",\"incomplete_details\":");
    if (!strcmp(status, "incomplete"))
        buf_puts(b, finish == FINISH_LENGTH ? "{\"reason\":\"max_output_tokens\"}" : "{\"reason\":\"content_filter\"}");
    else buf_puts(b, "null");
    buf_puts(b, ",\"model\":");
    buf_json_str(b, model, strlen(model));
    buf_puts(b, ",\"output\":[");
    if (output && output->len) buf_append(b, output->data, output->len);
    buf_puts(b, "],\"usage\":");
    if (u) put_usage(b, u);
    else buf_puts(b, "null");
    buf_puts(b, echo ? echo : default_echo);
    buf_putc(b, '}');
}

int rsp_render_response(const chat_resp *r, const char *id, const char *model, const char *echo, long created,
                        buf_t *out)
{
    buf_t items; buf_init(&items);
    const char *status = finish_status(r->finish);
    size_t k = 0;
    if (r->text.len || r->ncalls == 0) {
        put_msg_item(&items, id, k++, status, r->text.data ? r->text.data : "", r->text.len);
    }
    for (size_t i = 0; i < r->ncalls; i++) {
        if (k) buf_putc(&items, ',');
        put_call_item(&items, id, k++, "completed", r->calls[i].id, r->calls[i].name, r->calls[i].args.data,
                      r->calls[i].args.len);
    }
    int oom = items.oom;
    if (!oom) put_response(out, id, model, created, status, r->finish, NULL, &items, &r->usage, echo);
    buf_free(&items);
    return oom || out->oom ? -1 : 0;
}

/* ---- the event stream ---- */

static void ev_head(chat_enc *e, buf_t *out, const char *type)
{
    buf_puts(out, "event: ");
    buf_puts(out, type);
    buf_puts(out, "\ndata: {\"type\":\"");
    buf_puts(out, type);
    buf_puts(out, "\",\"sequence_number\":");
    buf_put_i64(out, e->rsp->seq++);
}

static void ev_item_ref(chat_enc *e, buf_t *out, size_t k, int content)
{
    buf_puts(out, ",\"item_id\":");
    item_id(out, e->id, e->rsp->items[k].call, k);
    buf_puts(out, ",\"output_index\":");
    buf_put_u64(out, k);
    if (content) buf_puts(out, ",\"content_index\":0");
}

/* Every item so far as in the final response's output. */
static void all_items(chat_enc *e, buf_t *b, const char *msg_status)
{
    struct rsp_enc *x = e->rsp;
    for (size_t k = 0; k < x->n; k++) {
        rsp_item *it = &x->items[k];
        if (k) buf_putc(b, ',');
        if (it->call) put_call_item(b, e->id, k, "completed", it->call_id, it->name, it->text.data, it->text.len);
        else put_msg_item(b, e->id, k, msg_status, it->text.data ? it->text.data : "", it->text.len);
    }
}

static void ev_response(chat_enc *e, buf_t *out, const char *type, const char *status, const char *error)
{
    buf_t items; buf_init(&items);
    int final = !strcmp(status, "completed") || !strcmp(status, "incomplete");
    if (strcmp(status, "in_progress")) all_items(e, &items, final ? status : "incomplete");
    ev_head(e, out, type);
    buf_puts(out, ",\"response\":");
    size_t at = out->len;
    put_response(out, e->id, e->model, e->created, status, e->finish, error, &items,
                 e->usage.present || final ? &e->usage : NULL, e->echo);
    if (final && !out->oom) {   /* kept for the store: the same object the client got */
        buf_reset(&e->rsp->final);
        buf_append(&e->rsp->final, out->data + at, out->len - at);
        e->rsp->final_ok = !e->rsp->final.oom;
    }
    buf_puts(out, "}\n\n");
    buf_free(&items);
}

void rsp_enc_start(chat_enc *e)
{
    if (e->rsp || !(e->rsp = calloc(1, sizeof *e->rsp))) return;
    e->rsp->cur = -1;
    for (int i = 0; i < CHAT_MAX_TOOL_CALLS; i++) e->rsp->tool_item[i] = -1;
    buf_init(&e->rsp->final);
}

static void started(chat_enc *e, buf_t *out)
{
    if (e->started) return;
    e->started = 1;
    ev_response(e, out, "response.created", "in_progress", NULL);
    ev_response(e, out, "response.in_progress", "in_progress", NULL);
}

static void close_item(chat_enc *e, buf_t *out, const char *msg_status)
{
    struct rsp_enc *x = e->rsp;
    if (x->cur < 0) return;
    size_t k = (size_t)x->cur;
    rsp_item *it = &x->items[k];
    x->cur = -1;
    const char *t = it->text.data ? it->text.data : "";
    if (it->call) {
        ev_head(e, out, "response.function_call_arguments.done");
        ev_item_ref(e, out, k, 0);
        buf_puts(out, ",\"name\":");
        buf_json_str(out, it->name, strlen(it->name));
        buf_puts(out, ",\"arguments\":");
        buf_json_str(out, t, it->text.len);
        buf_puts(out, "}\n\n");
    } else {
        ev_head(e, out, "response.output_text.done");
        ev_item_ref(e, out, k, 1);
        buf_puts(out, ",\"text\":");
        buf_json_str(out, t, it->text.len);
        buf_puts(out, ",\"logprobs\":[]}\n\n");
        ev_head(e, out, "response.content_part.done");
        ev_item_ref(e, out, k, 1);
        buf_puts(out, ",\"part\":");
        put_text_part(out, t, it->text.len);
        buf_puts(out, "}\n\n");
    }
    ev_head(e, out, "response.output_item.done");
    buf_puts(out, ",\"output_index\":");
    buf_put_u64(out, k);
    buf_puts(out, ",\"item\":");
    if (it->call) put_call_item(out, e->id, k, "completed", it->call_id, it->name, t, it->text.len);
    else put_msg_item(out, e->id, k, msg_status, t, it->text.len);
    buf_puts(out, "}\n\n");
}

/* Opens item k (already filled in): output_item.added (+ content_part.added). */
static void open_item(chat_enc *e, buf_t *out, size_t k)
{
    rsp_item *it = &e->rsp->items[k];
    e->rsp->cur = (int)k;
    ev_head(e, out, "response.output_item.added");
    buf_puts(out, ",\"output_index\":");
    buf_put_u64(out, k);
    buf_puts(out, ",\"item\":");
    if (it->call) put_call_item(out, e->id, k, "in_progress", it->call_id, it->name, "", 0);
    else put_msg_item(out, e->id, k, "in_progress", NULL, 0);
    buf_puts(out, "}\n\n");
    if (!it->call) {
        ev_head(e, out, "response.content_part.added");
        ev_item_ref(e, out, k, 1);
        buf_puts(out, ",\"part\":");
        put_text_part(out, "", 0);
        buf_puts(out, "}\n\n");
    }
}

static rsp_item *new_item(chat_enc *e, buf_t *out, int call)
{
    struct rsp_enc *x = e->rsp;
    close_item(e, out, "completed");
    if (x->n >= RSP_MAX_ITEMS) return NULL;
    rsp_item *it = &x->items[x->n++];
    memset(it, 0, sizeof *it);
    it->call = call;
    buf_init(&it->text);
    return it;
}

static char *dup_str(gw_str s)
{
    char *d = malloc(s.n + 1);
    if (d) { if (s.n) memcpy(d, s.p, s.n); d[s.n] = '\0'; }
    return d;
}

void rsp_enc_event(chat_enc *e, const chat_event *ev, buf_t *out)
{
    struct rsp_enc *x = e->rsp;
    if (!x) return;
    switch (ev->type) {
    case CEV_TEXT: {
        started(e, out);
        if (x->cur < 0 || x->items[x->cur].call) {
            if (!new_item(e, out, 0)) return;
            open_item(e, out, x->n - 1);
        }
        if (x->cur < 0) return;
        rsp_item *it = &x->items[x->cur];
        if (it->text.len + ev->text.n <= RSP_MAX_TEXT) buf_append(&it->text, ev->text.p, ev->text.n);
        ev_head(e, out, "response.output_text.delta");
        ev_item_ref(e, out, (size_t)x->cur, 1);
        buf_puts(out, ",\"delta\":");
        buf_json_str(out, ev->text.p, ev->text.n);
        buf_puts(out, ",\"logprobs\":[]}\n\n");
        break;
    }
    case CEV_TOOL_START: {
        started(e, out);
        e->ntools++;
        if (ev->index < 0 || ev->index >= CHAT_MAX_TOOL_CALLS || x->tool_item[ev->index] >= 0) return;
        rsp_item *it = new_item(e, out, 1);
        if (!it) return;
        it->call_id = dup_str(ev->id);
        it->name = dup_str(ev->name);
        if (!it->call_id || !it->name) { free(it->call_id); free(it->name); x->n--; return; }
        x->tool_item[ev->index] = (int)(x->n - 1);
        open_item(e, out, x->n - 1);
        break;
    }
    case CEV_TOOL_ARGS: {
        if (ev->index < 0 || ev->index >= CHAT_MAX_TOOL_CALLS || x->tool_item[ev->index] < 0) return;
        int k = x->tool_item[ev->index];
        if (x->items[k].text.len + ev->text.n <= RSP_MAX_TEXT) buf_append(&x->items[k].text, ev->text.p, ev->text.n);
        if (k != x->cur) return;   /* a call already closed: its arguments still reach the final output */
        ev_head(e, out, "response.function_call_arguments.delta");
        ev_item_ref(e, out, (size_t)k, 0);
        buf_puts(out, ",\"delta\":");
        buf_json_str(out, ev->text.p, ev->text.n);
        buf_puts(out, "}\n\n");
        break;
    }
    case CEV_FINISH:
        e->finished = 1;
        e->finish = ev->finish;
        break;
    case CEV_USAGE:
    case CEV_ERROR:
        break;
    }
}

void rsp_enc_end(chat_enc *e, const char *error, buf_t *out)
{
    if (!e->rsp) error = error ? error : "out of memory";
    if (!e->rsp) {   /* nothing could be kept: one error event */
        buf_puts(out, "event: error\ndata: {\"type\":\"error\",\"sequence_number\":0,\"code\":\"server_error\",\"message\":");
        buf_json_str(out, error, strlen(error));
        buf_puts(out, ",\"param\":null}\n\n");
        return;
    }
    started(e, out);
    if (error) {
        /* the client has the status line: the response fails, and an error
         * event makes the SDKs raise */
        close_item(e, out, "incomplete");
        ev_response(e, out, "response.failed", "failed", error);
        ev_head(e, out, "error");
        buf_puts(out, ",\"code\":\"server_error\",\"message\":");
        buf_json_str(out, error, strlen(error));
        buf_puts(out, ",\"param\":null}\n\n");
        return;
    }
    if (!e->finished) e->finish = e->ntools ? FINISH_TOOL_CALLS : FINISH_STOP;
    const char *status = finish_status(e->finish);
    if (e->rsp->n == 0) {   /* an answer without text or calls still has its (empty) message */
        if (new_item(e, out, 0)) open_item(e, out, 0);
    }
    close_item(e, out, status);
    ev_response(e, out, !strcmp(status, "completed") ? "response.completed" : "response.incomplete", status, NULL);
}

const buf_t *rsp_enc_final(const chat_enc *e)
{
    return e->rsp && e->rsp->final_ok ? &e->rsp->final : NULL;
}

void chat_enc_free(chat_enc *e)
{
    struct rsp_enc *x = e->rsp;
    if (!x) return;
    for (size_t k = 0; k < x->n; k++) {
        free(x->items[k].call_id);
        free(x->items[k].name);
        buf_free(&x->items[k].text);
    }
    buf_free(&x->final);
    free(x);
    e->rsp = NULL;
}
