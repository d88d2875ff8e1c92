#include "sse.h"

#include <string.h>

void sse_init(sse_parser *p, size_t max_event, sse_event_cb cb, void *ud)
{
    memset(p, 0, sizeof *p);
    buf_init(&p->line);
    buf_init(&p->data);
    p->max_event = max_event;
    p->on_event = cb;
    p->ud = ud;
}

void sse_free(sse_parser *p)
{
    buf_free(&p->line);
    buf_free(&p->data);
}

static void dispatch(sse_parser *p)
{
    if (p->skip) p->dropped++;
    else if (p->data.len > 0 || p->event[0]) {
        size_t n = p->data.len;
        if (n > 0 && p->data.data[n - 1] == '\n') n--;  /* the spec drops the last data newline */
        p->on_event(p->ud, p->event, p->data.data ? p->data.data : "", n);
    }
    buf_reset(&p->data);
    p->event[0] = '\0';
    p->skip = 0;
}

static void field(sse_parser *p, const char *l, size_t n)
{
    if (n == 0) { dispatch(p); return; }
    if (l[0] == ':') return;  /* comment, e.g. a keep-alive ping */
    const char *colon = memchr(l, ':', n);
    size_t nl = colon ? (size_t)(colon - l) : n;
    const char *v = colon ? colon + 1 : l + n;
    size_t vl = colon ? n - nl - 1 : 0;
    if (vl > 0 && v[0] == ' ') { v++; vl--; }
    if (nl == 4 && !memcmp(l, "data", 4)) {
        if (p->skip) return;
        if (p->data.len + vl + 1 > p->max_event) { p->skip = 1; buf_reset(&p->data); return; }
        buf_append(&p->data, v, vl);
        buf_putc(&p->data, '\n');
    } else if (nl == 5 && !memcmp(l, "event", 5)) {
        size_t k = vl < sizeof p->event - 1 ? vl : sizeof p->event - 1;
        memcpy(p->event, v, k);
        p->event[k] = '\0';
    }
}

void sse_feed(sse_parser *p, const char *b, size_t n)
{
    size_t i = 0;
    if (n == 0) return;   /* keeps last_cr: the "\n" of a split "\r\n" may still come */
    if (p->last_cr && b[0] == '\n') i = 1;  /* second half of a split "\r\n" */
    p->last_cr = 0;
    size_t start = i;
    while (i < n) {
        /* the next line end: '\n' by a vectorised search, then a '\r' before
         * it (streams rarely use one); every other byte is left unlooked at */
        const char *nl = memchr(b + i, '\n', n - i);
        size_t lim = nl ? (size_t)(nl - b) : n;
        const char *cr = memchr(b + i, '\r', lim - i);
        if (!cr && !nl) break;
        i = cr ? (size_t)(cr - b) : lim;
        char c = b[i];
        if (p->line.len) {
            buf_append(&p->line, b + start, i - start);
            field(p, p->line.data, p->line.len);
            buf_reset(&p->line);
        } else {
            field(p, b + start, i - start);
        }
        if (c == '\r') {
            if (i + 1 < n && b[i + 1] == '\n') i++;
            else if (i + 1 == n) p->last_cr = 1;
        }
        start = ++i;
    }
    if (start < n) {
        /* a partial line longer than an event can be is junk: cap what we keep */
        if (p->line.len + (n - start) > p->max_event + 64) { p->skip = 1; buf_reset(&p->line); }
        else buf_append(&p->line, b + start, n - start);
    }
}
