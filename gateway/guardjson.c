/* guardjson: guarding the text inside JSON bodies and SSE streams (guardjson.h). */
#include "guardjson.h"

#include <stdlib.h>
#include <string.h>

#include "providers/provider.h"

#define GUARD_EVENT_MAX (1u << 20)   /* one SSE event; larger ones end the stream */

/* Edits to one document: string spans replaced by new text, in document order. */
typedef struct edits {
    const guard_chain *c;
    int                stage;
    guard_result      *res;
    const char *const *lits;         /* mask_literals mode */
    size_t             nlits;
    const char        *placeholder;
    buf_t             *collect;      /* collect mode: the text joined by newlines */
    buf_t              text;         /* replacement texts, back to back */
    struct edit { size_t start, end, off, len; } *e;
    size_t             n, cap;
    int                oom;
} edits;

static size_t utf8_chars(const char *s, size_t n)
{
    size_t c = 0;
    for (size_t i = 0; i < n; i++) c += ((unsigned char)s[i] & 0xC0) != 0x80;
    return c;
}

/* Literal replacement (webhook verdicts): every occurrence, longest literal first at a position. */
static int replace_literals(edits *ed, const char *s, size_t n, buf_t *out)
{
    int changed = 0;
    size_t i = 0, from = 0;
    while (i < n) {
        size_t best = 0;
        for (size_t k = 0; k < ed->nlits; k++) {
            size_t l = strlen(ed->lits[k]);
            if (l && l > best && l <= n - i && !memcmp(s + i, ed->lits[k], l)) best = l;
        }
        if (!best) { i++; continue; }
        buf_append(out, s + from, i - from);
        buf_puts(out, ed->placeholder);
        i += best;
        from = i;
        changed = 1;
    }
    if (changed) buf_append(out, s + from, n - from);
    return changed;
}

static void guard_string(edits *ed, const json_value *v)
{
    if (!v || v->type != JSON_STRING) return;
    if (ed->collect) { buf_append(ed->collect, v->str, v->str_len); buf_putc(ed->collect, '\n'); return; }
    buf_t out;
    buf_init(&out);
    int rc;
    if (ed->lits) rc = replace_literals(ed, v->str, v->str_len, &out);
    else {
        ed->res->bytes += v->str_len;
        ed->res->chars += utf8_chars(v->str, v->str_len);
        rc = guard_text(ed->c, ed->stage, v->str, v->str_len, &out, ed->res);
    }
    if (rc < 0 || out.oom) ed->oom = 1;
    else if (rc == 1) {
        if (ed->n == ed->cap) {
            size_t cap = ed->cap ? ed->cap * 2 : 16;
            struct edit *ne = realloc(ed->e, cap * sizeof *ne);
            if (!ne) { ed->oom = 1; buf_free(&out); return; }
            ed->e = ne;
            ed->cap = cap;
        }
        ed->e[ed->n].start = v->start;
        ed->e[ed->n].end = v->end;
        ed->e[ed->n].off = ed->text.len;
        ed->e[ed->n].len = out.len;
        buf_append(&ed->text, out.data, out.len);
        ed->n++;
    }
    buf_free(&out);
}

/* A content-like value: a string, or a list of strings / blocks with "text"
 * (and tool results' nested "content"). */
static void guard_content(edits *ed, const json_value *v, int depth)
{
    if (!v || depth > 4) return;
    if (v->type == JSON_STRING) { guard_string(ed, v); return; }
    if (v->type != JSON_ARRAY) return;
    for (const json_value *e = v->first; e; e = e->next) {
        if (e->type == JSON_STRING) guard_string(ed, e);
        else if (e->type == JSON_OBJECT) {
            guard_string(ed, json_get(e, "text"));
            guard_content(ed, json_get(e, "content"), depth + 1);
        }
    }
}

static void guard_tool_calls(edits *ed, const json_value *tc)
{
    if (!tc || tc->type != JSON_ARRAY) return;
    for (const json_value *t = tc->first; t; t = t->next) guard_string(ed, json_get(json_get(t, "function"), "arguments"));
}

static void walk_input(edits *ed, int route, const json_value *root)
{
    switch ((gw_route)route) {
    case ROUTE_CHAT:
    case ROUTE_MESSAGES: {
        if (route == ROUTE_MESSAGES) guard_content(ed, json_get(root, "system"), 0);
        const json_value *msgs = json_get(root, "messages");
        for (const json_value *m = msgs && msgs->type == JSON_ARRAY ? msgs->first : NULL; m; m = m->next) {
            guard_content(ed, json_get(m, "content"), 0);
            guard_tool_calls(ed, json_get(m, "tool_calls"));
        }
        break;
    }
    case ROUTE_COMPLETIONS: guard_content(ed, json_get(root, "prompt"), 0); break;
    case ROUTE_EMBEDDINGS: guard_content(ed, json_get(root, "input"), 0); break;
    }
}

static void walk_output(edits *ed, const json_value *root)
{
    const json_value *ch = json_get(root, "choices");
    for (const json_value *c = ch && ch->type == JSON_ARRAY ? ch->first : NULL; c; c = c->next) {
        const json_value *m = json_get(c, "message");
        guard_content(ed, json_get(m, "content"), 0);
        guard_tool_calls(ed, json_get(m, "tool_calls"));
        guard_string(ed, json_get(c, "text"));
    }
    guard_content(ed, json_get(root, "content"), 0);   /* Anthropic */
}

/* The document with the edits spliced in. */
static int splice(const edits *ed, const char *src, size_t len, buf_t *out)
{
    size_t at = 0;
    buf_reset(out);
    for (size_t i = 0; i < ed->n; i++) {
        buf_append(out, src + at, ed->e[i].start - at);
        buf_json_str(out, ed->text.data + ed->e[i].off, ed->e[i].len);
        at = ed->e[i].end;
    }
    buf_append(out, src + at, len - at);
    return out->oom ? -1 : 0;
}

static edits *edits_new(const guard_chain *c, int stage, guard_result *res)
{
    edits *ed = calloc(1, sizeof *ed);
    if (!ed) return NULL;
    ed->c = c;
    ed->stage = stage;
    ed->res = res;
    buf_init(&ed->text);
    return ed;
}

static void edits_free(edits *ed)
{
    if (!ed) return;
    buf_free(&ed->text);
    free(ed->e);
    free(ed);
}

/* 1 rewritten, 0 unchanged, -1 out of memory. */
static int finish(edits *ed, const char *src, size_t len, buf_t *out)
{
    int rc = ed->oom || ed->text.oom ? -1 : 0;
    if (!rc && ed->n) rc = splice(ed, src, len, out) < 0 ? -1 : 1;
    edits_free(ed);
    return rc;
}

int guardjson_input(const guard_chain *c, int route, const char *body, const json_value *root, buf_t *out,
                    guard_result *res)
{
    edits *ed = edits_new(c, GUARD_INPUT, res);
    if (!ed) return -1;
    walk_input(ed, route, root);
    return finish(ed, body, root->end, out);
}

int guardjson_output(const guard_chain *c, const char *body, size_t len, buf_t *out, guard_result *res)
{
    json_error je;
    json_doc *d = json_parse(body, len, NULL, &je);
    if (!d) return 0;   /* not JSON: nothing the guard can read (errors are passed as they are) */
    edits *ed = edits_new(c, GUARD_OUTPUT, res);
    int rc = -1;
    if (ed) {
        walk_output(ed, json_root(d));
        rc = finish(ed, body, len, out);
    }
    json_doc_free(d);
    return rc;
}

int guardjson_mask_literals(int route, const char *body, const json_value *root, const char *const *lits, size_t n,
                            const char *placeholder, buf_t *out)
{
    guard_result scratch = { 0 };
    edits *ed = edits_new(NULL, GUARD_INPUT, &scratch);
    if (!ed) return -1;
    ed->lits = lits;
    ed->nlits = n;
    ed->placeholder = placeholder;
    walk_input(ed, route, root);
    return finish(ed, body, root->end, out);
}

/* ---- streams ---- */

void guard_sse_init(guard_sse *g, const guard_chain *c, guard_result *res, int anthropic)
{
    memset(g, 0, sizeof *g);
    g->chain = c;
    g->res = res;
    g->anthropic = anthropic;
    buf_init(&g->ev); buf_init(&g->tmp); buf_init(&g->text);
    for (int i = 0; i < GUARD_SSE_STREAMS; i++) buf_init(&g->s[i].tmpl);
}

void guard_sse_free(guard_sse *g)
{
    buf_free(&g->ev); buf_free(&g->tmp); buf_free(&g->text);
    for (int i = 0; i < GUARD_SSE_STREAMS; i++) {
        if (g->s[i].on) guard_stream_free(&g->s[i].gs);
        buf_free(&g->s[i].tmpl);
    }
}

static void emit_block(guard_sse *g, guard_emit_fn emit, void *ud)
{
    static const char oa[] = "data: {\"error\":{\"message\":\"The answer was blocked by a guardrail.\","
                             "\"type\":\"guardrail_error\",\"code\":\"output_blocked\",\"param\":null}}\n\n";
    static const char an[] = "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"invalid_request_error\","
                             "\"message\":\"The answer was blocked by a guardrail.\"}}\n\n";
    g->blocked = 1;
    if (g->anthropic) emit(ud, an, sizeof an - 1);
    else emit(ud, oa, sizeof oa - 1);
}

/* Text released for index i goes out in a copy of its last text event. */
static void emit_synthetic(guard_sse *g, int i, const char *t, size_t n, guard_emit_fn emit, void *ud)
{
    if (!n || !g->s[i].tmpl.len) return;
    buf_reset(&g->tmp);
    buf_append(&g->tmp, g->s[i].tmpl.data, g->s[i].span_start);
    buf_json_str(&g->tmp, t, n);
    buf_append(&g->tmp, g->s[i].tmpl.data + g->s[i].span_end, g->s[i].tmpl.len - g->s[i].span_end);
    if (!g->tmp.oom) emit(ud, g->tmp.data, g->tmp.len);
}

static void flush_index(guard_sse *g, int i, guard_emit_fn emit, void *ud)
{
    if (!g->s[i].on) return;
    buf_reset(&g->text);
    guard_stream_flush(&g->s[i].gs, &g->text);
    if (g->res->action == GUARD_BLOCK) return;
    emit_synthetic(g, i, g->text.data, g->text.len, emit, ud);
}

static void flush_all(guard_sse *g, guard_emit_fn emit, void *ud)
{
    for (int i = 0; i < GUARD_SSE_STREAMS && g->res->action != GUARD_BLOCK; i++) flush_index(g, i, emit, ud);
}

static int stream_index(const json_value *idx, int fallback)
{
    if (idx && idx->type == JSON_NUMBER && idx->is_int && idx->i64 >= 0) return (int)idx->i64;
    return fallback;
}

/* One whole event (ev[0..len), blank line included). */
static void on_event(guard_sse *g, const char *ev, size_t len, guard_emit_fn emit, void *ud)
{
    /* the data line: "data:" at a line start */
    const char *d = NULL;
    for (size_t i = 0; i + 5 <= len; i++)
        if ((i == 0 || ev[i - 1] == '\n') && !memcmp(ev + i, "data:", 5)) { d = ev + i + 5; break; }
    if (!d) { emit(ud, ev, len); return; }
    if (d < ev + len && *d == ' ') d++;
    const char *de = memchr(d, '\n', (size_t)(ev + len - d));
    if (!de) de = ev + len;
    size_t dlen = (size_t)(de - d);
    if (dlen && d[dlen - 1] == '\r') dlen--;
    if (dlen == 6 && !memcmp(d, "[DONE]", 6)) {
        flush_all(g, emit, ud);
        if (g->res->action == GUARD_BLOCK) { emit_block(g, emit, ud); return; }
        emit(ud, ev, len);
        return;
    }
    json_error je;
    json_doc *doc = dlen && d[0] == '{' ? json_parse(d, dlen, NULL, &je) : NULL;
    if (!doc) { emit(ud, ev, len); return; }
    const json_value *root = json_root(doc);
    /* what in this event is text (index, string) and what ends an index */
    const json_value *texts[GUARD_SSE_STREAMS];
    int tidx[GUARD_SSE_STREAMS], nt = 0, flush_before = -1, flush_every = 0;
    if (g->anthropic) {
        const char *type = json_get_str(root, "type");
        int idx = stream_index(json_get(root, "index"), 0);
        if (type && !strcmp(type, "content_block_delta")) {
            const json_value *delta = json_get(root, "delta");
            const char *dt = json_get_str(delta, "type");
            const json_value *t = json_get(delta, "text");
            if (dt && !strcmp(dt, "text_delta") && t && t->type == JSON_STRING) { texts[nt] = t; tidx[nt++] = idx; }
        } else if (type && !strcmp(type, "content_block_stop")) flush_before = idx;
        else if (type && (!strcmp(type, "message_delta") || !strcmp(type, "message_stop"))) flush_every = 1;
    } else {
        const json_value *ch = json_get(root, "choices");
        int pos = 0;
        for (const json_value *c = ch && ch->type == JSON_ARRAY ? ch->first : NULL; c; c = c->next, pos++) {
            int idx = stream_index(json_get(c, "index"), pos);
            const json_value *t = json_get(json_get(c, "delta"), "content");
            if (!t || t->type != JSON_STRING) t = json_get(c, "text");
            if (t && t->type == JSON_STRING && nt < GUARD_SSE_STREAMS) { texts[nt] = t; tidx[nt++] = idx; }
            const json_value *fr = json_get(c, "finish_reason");
            if (fr && fr->type == JSON_STRING) { if (flush_before < 0) flush_before = idx; else flush_every = 1; }
        }
    }
    if (flush_every) flush_all(g, emit, ud);
    else if (flush_before >= 0 && flush_before < GUARD_SSE_STREAMS && !nt) flush_index(g, flush_before, emit, ud);
    if (g->res->action == GUARD_BLOCK) { json_doc_free(doc); emit_block(g, emit, ud); return; }
    if (!nt) { json_doc_free(doc); emit(ud, ev, len); return; }
    /* rewrite each text string with what may be released now */
    size_t off = (size_t)(d - ev);
    buf_t out;
    buf_init(&out);
    size_t at = 0;
    for (int k = 0; k < nt; k++) {
        int i = tidx[k];
        if (i >= GUARD_SSE_STREAMS || texts[k]->type != JSON_STRING) {   /* more choices than tracked: refused, never unchecked */
            guard_result_add(g->res, GUARD_OUTPUT, "too_many_choices", GUARD_BLOCK, 0);
            break;
        }
        if (!g->s[i].on) { guard_stream_init(&g->s[i].gs, g->chain, g->res); g->s[i].on = 1; }
        buf_reset(&g->text);
        guard_stream_feed(&g->s[i].gs, texts[k]->str, texts[k]->str_len, &g->text);
        int ends = flush_before == i;   /* a final chunk with both text and finish_reason */
        if (ends) guard_stream_flush(&g->s[i].gs, &g->text);
        buf_append(&out, ev + at, off + texts[k]->start - at);
        size_t s0 = out.len;
        buf_json_str(&out, g->text.data ? g->text.data : "", g->text.len);
        at = off + texts[k]->end;
        if (nt == 1) {   /* template for synthetic releases: this event with the string's span */
            buf_reset(&g->s[i].tmpl);
            buf_append(&g->s[i].tmpl, out.data, s0);
            g->s[i].span_start = s0;
            buf_append(&g->s[i].tmpl, "\"\"", 2);   /* the string's place; replaced when used */
            buf_append(&g->s[i].tmpl, ev + at, len - at);
            g->s[i].span_end = s0 + 2;
        }
    }
    buf_append(&out, ev + at, len - at);
    json_doc_free(doc);
    if (g->res->action == GUARD_BLOCK) emit_block(g, emit, ud);
    else if (!out.oom) emit(ud, out.data, out.len);
    buf_free(&out);
}

void guard_sse_feed(guard_sse *g, const char *p, size_t n, guard_emit_fn emit, void *ud)
{
    if (g->blocked) return;
    size_t from = 0;
    for (size_t i = 0; i < n && !g->blocked; i++) {
        if (p[i] != '\n') continue;
        if (g->ev.len + (i + 1 - from) > GUARD_EVENT_MAX) break;
        buf_append(&g->ev, p + from, i + 1 - from);
        from = i + 1;
        if (g->ev.oom) { emit_block(g, emit, ud); return; }
        /* a blank line ends the event: "\n\n" or "\n\r\n", wherever the pieces were cut */
        const char *e = g->ev.data;
        size_t len = g->ev.len;
        if (!((len >= 2 && e[len - 2] == '\n') || (len >= 3 && e[len - 2] == '\r' && e[len - 3] == '\n'))) continue;
        on_event(g, e, len, emit, ud);
        buf_reset(&g->ev);
    }
    if (g->blocked || from >= n) return;
    if (g->ev.len + (n - from) > GUARD_EVENT_MAX) {   /* an event too large to inspect is not relayed unchecked */
        guard_result_add(g->res, GUARD_OUTPUT, "event_too_large", GUARD_BLOCK, 0);
        emit_block(g, emit, ud);
        return;
    }
    buf_append(&g->ev, p + from, n - from);
}

void guard_sse_end(guard_sse *g, guard_emit_fn emit, void *ud)
{
    if (g->blocked) return;
    if (g->ev.len) {   /* a last event without its blank line */
        on_event(g, g->ev.data, g->ev.len, emit, ud);
        buf_reset(&g->ev);
        if (g->blocked) return;
    }
    flush_all(g, emit, ud);
    if (g->res->action == GUARD_BLOCK) emit_block(g, emit, ud);
}

int guardjson_collect(int route, const json_value *root, buf_t *out)
{
    guard_result scratch = { 0 };
    edits *ed = edits_new(NULL, GUARD_INPUT, &scratch);
    if (!ed) return -1;
    ed->collect = out;
    walk_input(ed, route, root);
    edits_free(ed);
    return out->oom ? -1 : 0;
}
