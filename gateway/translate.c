#include "translate.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "responses.h"

chat_client xlate_client(gw_route route)
{
    switch (route) {
    case ROUTE_MESSAGES: return CLIENT_ANTHROPIC;
    case ROUTE_COMPLETIONS: return CLIENT_OPENAI_COMPLETIONS;
    case ROUTE_RESPONSES: return CLIENT_OPENAI_RESPONSES;
    case ROUTE_CHAT: case ROUTE_EMBEDDINGS: break;
    }
    return CLIENT_OPENAI_CHAT;
}

int xlate_needed(const provider *p, gw_route route)
{
    if (route == ROUTE_MESSAGES) return p->dialect != DIALECT_ANTHROPIC;
    if (route == ROUTE_RESPONSES) return 1;   /* always through the chat form: few servers have /responses */
    return p->dialect != DIALECT_OPENAI;
}

int xlate_parse_request(gw_route route, const json_value *root, const char *body, chat_req *out,
                        char *msg, size_t msglen, const char **param)
{
    if (route == ROUTE_MESSAGES) return chat_from_anthropic(root, body, out, msg, msglen, param);
    if (route == ROUTE_RESPONSES && out->responses) return 0;   /* parsed with its previous response (responses.h) */
    if (route == ROUTE_RESPONSES) return chat_from_responses(root, body, NULL, NULL, out, msg, msglen, param);
    return chat_from_openai(root, body, route == ROUTE_COMPLETIONS, out, msg, msglen, param);
}

void xlate_client_id(gw_route route, const char *rid, char *out, size_t len)
{
    if (route == ROUTE_RESPONSES) {   /* "resp_" + the request id without its "req_" */
        snprintf(out, len, "resp_%s", strncmp(rid, "req_", 4) ? rid : rid + 4);
        return;
    }
    const char *prefix = route == ROUTE_MESSAGES ? "msg_" : route == ROUTE_COMPLETIONS ? "cmpl-" : "chatcmpl-";
    snprintf(out, len, "%s%s", prefix, rid);
}

int xlate_response(const provider *p, gw_route route, const chat_req *q, const char *id, const char *model,
                   const char *body, size_t len, buf_t *out, usage_t *usage, char *err, size_t errlen)
{
    chat_resp r;
    chat_resp_init(&r);
    int rc = p->parse_response ? p->parse_response(body, len, &r, err, errlen) : -1;
    if (!p->parse_response) snprintf(err, errlen, "provider %s cannot answer this route", p->name);
    if (rc == 0) {
        buf_reset(out);
        if (route == ROUTE_RESPONSES) {
            rc = rsp_render_response(&r, id, model, q && q->responses ? q->responses->echo.data : NULL, (long)time(NULL), out);
            if (rc == 0) responses_keep(q, id, out->data, out->len);
        } else {
            rc = chat_render_response(xlate_client(route), &r, id, model, out);
        }
        if (rc < 0) snprintf(err, errlen, "out of memory");
        if (r.usage.present) *usage = r.usage;
    }
    chat_resp_free(&r);
    return rc;
}

int xlate_error_status(int up_status)
{
    switch (up_status) {
    case 400: case 413: case 422: return 400;   /* the client's request, as the provider read it */
    case 429: return 429;
    }
    return 502;   /* credentials, unknown upstream model, provider failures: the operator's problem */
}

static void on_event(void *ud, const chat_event *ev)
{
    xlate_stream *x = ud;
    if (ev->type == CEV_ERROR) {
        snprintf(x->error, sizeof x->error, "the provider reported an error: %.*s",
                 (int)(ev->text.n > 200 ? 200 : ev->text.n), ev->text.p);
        x->failed = 1;
        return;
    }
    chat_enc_event(&x->enc, ev, &x->out);
}

int xlate_stream_start(xlate_stream *x, const provider *p, gw_route route, const chat_req *q, const char *id,
                       const char *model, int include_usage)
{
    memset(x, 0, sizeof *x);
    x->p = p;
    x->q = q;
    buf_init(&x->out);
    chat_enc_init(&x->enc, xlate_client(route), id, model, include_usage);
    if (q && q->responses) x->enc.echo = q->responses->echo.data;
    if (!p->stream_new || !(x->dec = p->stream_new())) return -1;
    return 0;
}

void xlate_stream_feed(xlate_stream *x, const char *data, size_t len)
{
    if (x->failed) return;   /* the rest of a broken stream is drained and dropped */
    if (x->p->stream_feed(x->dec, data, len, on_event, x) < 0 && !x->failed) {
        x->failed = 1;
        snprintf(x->error, sizeof x->error, "the provider's stream was malformed");
    }
}

void xlate_stream_end(xlate_stream *x, int upstream_ok, const char *why)
{
    if (upstream_ok && !x->failed && x->p->stream_end(x->dec, on_event, x) < 0 && !x->failed) {
        x->failed = 1;
        snprintf(x->error, sizeof x->error, "the provider's stream ended before it was complete");
    }
    if (!upstream_ok && !x->error[0]) snprintf(x->error, sizeof x->error, "upstream stream failed: %s", why ? why : "error");
    chat_enc_end(&x->enc, x->failed || !upstream_ok ? x->error : NULL, &x->out);
    const buf_t *final = x->enc.cl == CLIENT_OPENAI_RESPONSES ? rsp_enc_final(&x->enc) : NULL;
    if (final) responses_keep(x->q, x->enc.id, final->data, final->len);
}

void xlate_stream_free(xlate_stream *x)
{
    if (x->dec) x->p->stream_free(x->dec);
    x->dec = NULL;
    chat_enc_free(&x->enc);
    buf_free(&x->out);
}
