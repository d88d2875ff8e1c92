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

/* Every string inside a JSON value (a tool's input object), bounded in depth. */
static void guard_deep(edits *ed, const json_value *v, int depth)
{
    if (!v || depth > 16) return;
    if (v->type == JSON_STRING) guard_string(ed, v);
    else if (v->type == JSON_ARRAY || v->type == JSON_OBJECT)
        for (const json_value *c = v->first; c; c = c->next) guard_deep(ed, c, depth + 1);
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
            const char *type = json_get_str(e, "type");
            if (type && !strcmp(type, "tool_use")) guard_deep(ed, json_get(e, "input"), 0);   /* Anthropic tool input */
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
    case ROUTE_RESPONSES: {   /* instructions, and input as a string or items (messages, calls, call outputs) */
        guard_string(ed, json_get(root, "instructions"));
        const json_value *in = json_get(root, "input");
        if (in && in->type == JSON_STRING) guard_string(ed, in);
        for (const json_value *it = in && in->type == JSON_ARRAY ? in->first : NULL; it; it = it->next) {
            guard_content(ed, json_get(it, "content"), 0);
            guard_string(ed, json_get(it, "arguments"));
            guard_string(ed, json_get(it, "output"));
        }
        break;
    }
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
    const json_value *out = json_get(root, "output");   /* Responses: message and function_call items */
    for (const json_value *o = out && out->type == JSON_ARRAY ? out->first : NULL; o; o = o->next) {
        guard_content(ed, json_get(o, "content"), 0);
        guard_string(ed, json_get(o, "arguments"));
    }
}

static int by_start(const void *a, const void *b)
{
    size_t x = ((const struct edit *)a)->start, y = ((const struct edit *)b)->start;
    return x < y ? -1 : x > y;
}

/* The document with the edits spliced in (they are visited by key, not in
 * document order: "tool_calls" may come before "content"). */
static int splice(edits *ed, const char *src, size_t len, buf_t *out)
{
    qsort(ed->e, ed->n, sizeof *ed->e, by_start);
    size_t at = 0;
    buf_reset(out);
    for (size_t i = 0; i < ed->n; i++) {
        if (ed->e[i].start < at) continue;   /* never overlapping (distinct values); kept safe regardless */
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

/* Text released for slot i goes out in a copy of its last text event. */
static void emit_synthetic(guard_sse *g, int i, const char *t, size_t n, guard_emit_fn emit, void *ud)
{
    if (!n || !g->s[i].tmpl.len) return;
    buf_reset(&g->tmp);
    buf_append(&g->tmp, g->s[i].tmpl.data, g->s[i].span_start);
    buf_json_str(&g->tmp, t, n);
    buf_append(&g->tmp, g->s[i].tmpl.data + g->s[i].span_end, g->s[i].tmpl.len - g->s[i].span_end);
    if (!g->tmp.oom) emit(ud, g->tmp.data, g->tmp.len);
}

static void flush_slot(guard_sse *g, int i, guard_emit_fn emit, void *ud)
{
    if (!g->s[i].on) return;
    buf_reset(&g->text);
    guard_stream_flush(&g->s[i].gs, &g->text);
    if (g->res->action == GUARD_BLOCK) return;
    emit_synthetic(g, i, g->text.data, g->text.len, emit, ud);
}

static void flush_all(guard_sse *g, guard_emit_fn emit, void *ud)
{
    for (int i = 0; i < GUARD_SSE_STREAMS && g->res->action != GUARD_BLOCK; i++) flush_slot(g, i, emit, ud);
}

/* The slot of a text stream (OpenAI: choice * 64, + 1 + n for tool call n's
 * arguments; Anthropic: the content block index); -1 when all are taken. */
static int find_slot(guard_sse *g, long key)
{
    int free_slot = -1;
    for (int i = 0; i < GUARD_SSE_STREAMS; i++) {
        if (g->s[i].on && g->s[i].key == key) return i;
        if (!g->s[i].on && free_slot < 0) free_slot = i;
    }
    if (free_slot >= 0) {
        guard_stream_init(&g->s[free_slot].gs, g->chain, g->res);
        g->s[free_slot].on = 1;
        g->s[free_slot].key = key;
    }
    return free_slot;
}

static long stream_index(const json_value *idx, long fallback)
{
    if (idx && idx->type == JSON_NUMBER && idx->is_int && idx->i64 >= 0 && idx->i64 < (1L << 20)) return (long)idx->i64;
    return fallback;
}

#define MAX_EVENT_TEXTS 16

typedef struct ev_texts {
    const json_value *v[MAX_EVENT_TEXTS];
    long              key[MAX_EVENT_TEXTS];
    int               n, overflow;
    long              end_lo[MAX_EVENT_TEXTS], end_hi[MAX_EVENT_TEXTS];   /* key ranges this event ends */
    int               nend, end_all;
} ev_texts;

static void add_text(ev_texts *t, const json_value *v, long key)
{
    if (!v || v->type != JSON_STRING) return;
    if (t->n == MAX_EVENT_TEXTS) { t->overflow = 1; return; }
    t->v[t->n] = v;
    t->key[t->n++] = key;
}

static void add_end(ev_texts *t, long lo, long hi)
{
    if (t->nend == MAX_EVENT_TEXTS) { t->end_all = 1; return; }
    t->end_lo[t->nend] = lo;
    t->end_hi[t->nend++] = hi;
}

static int ends(const ev_texts *t, long key)
{
    if (t->end_all) return 1;
    for (int i = 0; i < t->nend; i++) if (key >= t->end_lo[i] && key < t->end_hi[i]) return 1;
    return 0;
}

static int has_text(const ev_texts *t, long key)
{
    for (int i = 0; i < t->n; i++) if (t->key[i] == key) return 1;
    return 0;
}

/* What in this event is text, per stream, and which streams it ends. */
static void find_texts(const guard_sse *g, const json_value *root, ev_texts *t)
{
    if (g->anthropic) {
        const char *type = json_get_str(root, "type");
        long idx = stream_index(json_get(root, "index"), 0);
        if (type && !strcmp(type, "content_block_delta")) {
            const json_value *delta = json_get(root, "delta");
            const char *dt = json_get_str(delta, "type");
            if (dt && !strcmp(dt, "text_delta")) add_text(t, json_get(delta, "text"), idx);
            else if (dt && !strcmp(dt, "input_json_delta")) add_text(t, json_get(delta, "partial_json"), idx);   /* tool input */
        } else if (type && !strcmp(type, "content_block_stop")) add_end(t, idx, idx + 1);
        else if (type && (!strcmp(type, "message_delta") || !strcmp(type, "message_stop"))) t->end_all = 1;
        return;
    }
    const json_value *ch = json_get(root, "choices");
    long pos = 0;
    for (const json_value *c = ch && ch->type == JSON_ARRAY ? ch->first : NULL; c; c = c->next, pos++) {
        long idx = stream_index(json_get(c, "index"), pos);
        const json_value *delta = json_get(c, "delta");
        const json_value *tx = json_get(delta, "content");
        add_text(t, tx && tx->type == JSON_STRING ? tx : json_get(c, "text"), idx * 64);
        const json_value *tc = json_get(delta, "tool_calls");
        long tpos = 0;
        for (const json_value *x = tc && tc->type == JSON_ARRAY ? tc->first : NULL; x; x = x->next, tpos++) {
            long ti = stream_index(json_get(x, "index"), tpos);
            if (ti < 63) add_text(t, json_get(json_get(x, "function"), "arguments"), idx * 64 + 1 + ti);
            else t->overflow = 1;
        }
        const json_value *fr = json_get(c, "finish_reason");
        if (fr && fr->type == JSON_STRING) add_end(t, idx * 64, idx * 64 + 64);
    }
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
    ev_texts t;
    memset(&t, 0, sizeof t);
    find_texts(g, json_root(doc), &t);
    if (t.overflow) guard_result_add(g->res, GUARD_OUTPUT, "too_many_streams", GUARD_BLOCK, 0);
    /* streams this event ends without text of their own: their held text first */
    for (int i = 0; i < GUARD_SSE_STREAMS && g->res->action != GUARD_BLOCK; i++)
        if (g->s[i].on && ends(&t, g->s[i].key) && !has_text(&t, g->s[i].key)) flush_slot(g, i, emit, ud);
    if (g->res->action == GUARD_BLOCK) { json_doc_free(doc); emit_block(g, emit, ud); return; }
    if (!t.n) { json_doc_free(doc); emit(ud, ev, len); return; }
    /* document order, for splicing */
    for (int a = 1; a < t.n; a++)
        for (int b = a; b > 0 && t.v[b]->start < t.v[b - 1]->start; b--) {
            const json_value *tv = t.v[b]; t.v[b] = t.v[b - 1]; t.v[b - 1] = tv;
            long tk = t.key[b]; t.key[b] = t.key[b - 1]; t.key[b - 1] = tk;
        }
    /* rewrite each text string with what may be released now */
    size_t off = (size_t)(d - ev);
    buf_t out;
    buf_init(&out);
    size_t at = 0;
    for (int k = 0; k < t.n; k++) {
        int i = find_slot(g, t.key[k]);
        if (i < 0) {   /* more streams than tracked: refused, never unchecked */
            guard_result_add(g->res, GUARD_OUTPUT, "too_many_streams", GUARD_BLOCK, 0);
            break;
        }
        buf_reset(&g->text);
        guard_stream_feed(&g->s[i].gs, t.v[k]->str, t.v[k]->str_len, &g->text);
        if (ends(&t, t.key[k])) guard_stream_flush(&g->s[i].gs, &g->text);   /* its last text, with the finish */
        buf_append(&out, ev + at, off + t.v[k]->start - at);
        size_t s0 = out.len;
        buf_json_str(&out, g->text.data ? g->text.data : "", g->text.len);
        at = off + t.v[k]->end;
        if (t.n == 1) {   /* template for synthetic releases: this event with the string's span */
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
