/* chat: lifetimes of the internal request and answer forms. */
#include "chat.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct chat_owned { struct chat_owned *next; char data[]; };

void chat_req_init(chat_req *r)
{
    memset(r, 0, sizeof *r);
    buf_init(&r->system);
    r->max_tokens = -1;
    r->parallel_tool_calls = -1;
}

void chat_req_free(chat_req *r)
{
    for (size_t i = 0; i < r->nmsgs; i++) free(r->msgs[i].parts);
    free(r->msgs);
    free(r->tools);
    buf_free(&r->system);
    chat_responses_free(r->responses);
    for (struct chat_owned *o = r->owned, *n; o; o = n) { n = o->next; free(o); }
    chat_req_init(r);
}

const char *chat_req_strdup(chat_req *r, const char *s, size_t n)
{
    struct chat_owned *o = malloc(sizeof *o + n + 1);
    if (!o) return NULL;
    memcpy(o->data, s, n);
    o->data[n] = '\0';
    o->next = r->owned;
    r->owned = o;
    return o->data;
}

gw_str chat_req_tool_name(const chat_req *r, gw_str call_id)
{
    for (size_t i = 0; i < r->nmsgs; i++)
        for (size_t k = 0; k < r->msgs[i].nparts; k++) {
            const chat_part *p = &r->msgs[i].parts[k];
            if (p->kind == PART_TOOL_CALL && p->id.n == call_id.n && !memcmp(p->id.p, call_id.p, call_id.n))
                return p->name;
        }
    return (gw_str){ NULL, 0 };
}

void chat_resp_init(chat_resp *r)
{
    memset(r, 0, sizeof *r);
    buf_init(&r->text);
}

void chat_resp_free(chat_resp *r)
{
    free(r->id);
    buf_free(&r->text);
    for (size_t i = 0; i < r->ncalls; i++) {
        free(r->calls[i].id);
        free(r->calls[i].name);
        buf_free(&r->calls[i].args);
    }
    chat_resp_init(r);
}

static char *dupn(const char *s, size_t n)
{
    char *d = malloc(n + 1);
    if (d) { memcpy(d, s, n); d[n] = '\0'; }
    return d;
}

int chat_resp_add_call(chat_resp *r, const char *id, size_t idn, const char *name, size_t namen,
                       const char *args, size_t argsn)
{
    if (r->ncalls >= CHAT_MAX_TOOL_CALLS) return -1;
    chat_tool_call *c = &r->calls[r->ncalls];
    buf_init(&c->args);
    c->id = dupn(id, idn);
    c->name = dupn(name, namen);
    if (!c->id || !c->name || buf_append(&c->args, args, argsn) < 0) {
        free(c->id); free(c->name); buf_free(&c->args);
        return -1;
    }
    r->ncalls++;
    return 0;
}

const char *chat_finish_openai(chat_finish f)
{
    switch (f) {
    case FINISH_LENGTH: return "length";
    case FINISH_TOOL_CALLS: return "tool_calls";
    case FINISH_CONTENT_FILTER: return "content_filter";
    case FINISH_NONE: case FINISH_STOP: break;
    }
    return "stop";
}

const char *chat_finish_anthropic(chat_finish f)
{
    switch (f) {
    case FINISH_LENGTH: return "max_tokens";
    case FINISH_TOOL_CALLS: return "tool_use";
    case FINISH_CONTENT_FILTER: return "refusal";
    case FINISH_NONE: case FINISH_STOP: break;
    }
    return "end_turn";
}

void chat_call_id(char *out, size_t len, unsigned long long seq, int index)
{
    snprintf(out, len, "call_%llx_%d", seq, index);
}
