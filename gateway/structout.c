#include "structout.h"

#include <stdio.h>
#include <string.h>

#include "jschema.h"
#include "log.h"

#define ANSWER_MAX_DEPTH 64

const json_value *structout_schema(const json_value *root)
{
    const json_value *rf = json_get(root, "response_format");
    const char *t = rf ? json_get_str(rf, "type") : NULL;
    if (!t || strcmp(t, "json_schema")) return NULL;
    const json_value *js = json_get(rf, "json_schema");
    if (!js || !json_get_bool(js, "strict")) return NULL;
    const json_value *s = json_get(js, "schema");
    return s && (s->type == JSON_OBJECT || s->type == JSON_TRUE || s->type == JSON_FALSE) ? s : NULL;
}

int structout_check_text(const json_value *schema, const char *text, size_t len, char *msg, size_t msglen)
{
    json_limits lim = { .max_depth = ANSWER_MAX_DEPTH, .max_bytes = 0 };
    json_error jerr;
    json_doc *d = json_parse(text ? text : "", len, &lim, &jerr);
    if (!d) {
        snprintf(msg, msglen, "$: the answer is not valid JSON (%s at byte %zu)", jerr.message, jerr.offset);
        return STRUCTOUT_VIOLATION;
    }
    char path[256], why[200];
    int rc = jschema_validate(schema, json_root(d), path, sizeof path, why, sizeof why);
    json_doc_free(d);
    if (rc == JSCHEMA_UNCHECKED) {
        log_debug("structured output not checked: %s", why);
        return STRUCTOUT_OK;
    }
    if (rc == JSCHEMA_INVALID) {
        snprintf(msg, msglen, "%s: %s", path, why);
        return STRUCTOUT_VIOLATION;
    }
    return STRUCTOUT_OK;
}

int structout_check(const provider *p, const json_value *schema, const char *body, size_t len,
                    char *msg, size_t msglen)
{
    if (!p->parse_response) return STRUCTOUT_OK;
    chat_resp cr;
    chat_resp_init(&cr);
    char err[160];
    int rc = STRUCTOUT_OK;
    if (p->parse_response(body ? body : "", len, &cr, err, sizeof err) == 0 && !(cr.ncalls && !cr.text.len))
        rc = structout_check_text(schema, cr.text.data, cr.text.len, msg, msglen);
    chat_resp_free(&cr);
    return rc;
}

/* ---- streams ---- */

static void on_event(void *ud, const char *event, const char *data, size_t len)
{
    structout_stream *s = ud;
    if (len == 6 && !memcmp(data, "[DONE]", 6)) { s->done_seen = 1; return; }
    buf_t ev; buf_init(&ev);
    if (event && event[0]) { buf_puts(&ev, "event: "); buf_puts(&ev, event); buf_putc(&ev, '\n'); }
    buf_puts(&ev, "data: ");
    buf_append(&ev, data, len);
    buf_puts(&ev, "\n\n");
    if (!ev.oom) s->emit(s->ud, ev.data, ev.len);
    buf_free(&ev);
    if (s->too_large || len == 0 || data[0] != '{') return;
    json_doc *d = json_parse(data, len, NULL, NULL);
    const json_value *c = d ? json_get(json_get(json_at(json_get(json_root(d), "choices"), 0), "delta"), "content") : NULL;
    if (c && c->type == JSON_STRING) {
        if (s->text.len + c->str_len > STRUCTOUT_STREAM_MAX) s->too_large = 1;
        else buf_append(&s->text, c->str, c->str_len);
    }
    json_doc_free(d);
}

void structout_stream_init(structout_stream *s, structout_emit_fn emit, void *ud)
{
    memset(s, 0, sizeof *s);
    buf_init(&s->text);
    s->emit = emit;
    s->ud = ud;
    sse_init(&s->sse, STRUCTOUT_STREAM_MAX, on_event, s);
}

void structout_stream_feed(structout_stream *s, const char *p, size_t n) { sse_feed(&s->sse, p, n); }

int structout_stream_end(structout_stream *s, const json_value *schema, int ok, char *msg, size_t msglen)
{
    int rc = STRUCTOUT_OK;
    if (ok && !s->too_large && !s->text.oom)
        rc = structout_check_text(schema, s->text.data, s->text.len, msg, msglen);
    if (rc == STRUCTOUT_VIOLATION) {
        buf_t ev; buf_init(&ev);
        char m[420];
        snprintf(m, sizeof m, "The model's answer does not match the response_format JSON schema: %s", msg);
        buf_puts(&ev, "data: {\"error\":{\"message\":");
        buf_json_str(&ev, m, strlen(m));
        buf_puts(&ev, ",\"type\":\"upstream_error\",\"code\":\"schema_validation_failed\",\"param\":\"response_format\"}}\n\n");
        if (!ev.oom) s->emit(s->ud, ev.data, ev.len);
        buf_free(&ev);
    } else if (s->done_seen) {
        s->emit(s->ud, "data: [DONE]\n\n", 14);
    }
    return rc;
}

void structout_stream_free(structout_stream *s)
{
    sse_free(&s->sse);
    buf_free(&s->text);
}
