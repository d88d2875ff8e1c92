/* fuzz target: gateway/sse.c, the upstream stream parser.
 *
 * The input's first bytes choose split points; the rest is the stream. The
 * stream is fed once whole and once in the chosen pieces (empty pieces
 * included): when no line is longer than an event may be, both must give
 * the same events. Every event must respect the bound and the event name
 * must fit its buffer. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "sse.h"

#define CHECK(c) do { if (!(c)) { fprintf(stderr, "check failed: %s (%s:%d)\n", #c, __FILE__, __LINE__); abort(); } } while (0)
#define MAX_EVENT 256

typedef struct rec { buf_t log; size_t events; } rec;

static void on_event(void *ud, const char *event, const char *data, size_t len)
{
    rec *r = ud;
    CHECK(len <= MAX_EVENT);
    CHECK(strlen(event) < 32);
    r->events++;
    buf_printf(&r->log, "[%s|%zu|", event, len);
    buf_append(&r->log, data, len);
    buf_putc(&r->log, ']');
}

static void run(const char *s, size_t n, const uint8_t *cuts, size_t ncuts, rec *r, size_t *dropped)
{
    sse_parser p;
    sse_init(&p, MAX_EVENT, on_event, r);
    size_t off = 0;
    for (size_t i = 0; i < ncuts && off <= n; i++) {
        size_t k = cuts[i] % 17;           /* 0..16 bytes per piece, 0 = an empty feed */
        if (k > n - off) k = n - off;
        char *piece = malloc(k ? k : 1);   /* exact size: ASan sees any over-read */
        memcpy(piece, s + off, k);
        sse_feed(&p, piece, k);
        free(piece);
        off += k;
    }
    if (off < n) {
        char *piece = malloc(n - off);
        memcpy(piece, s + off, n - off);
        sse_feed(&p, piece, n - off);
        free(piece);
    }
    *dropped = p.dropped;
    sse_free(&p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    size_t ncuts = data[0] % 32;
    if (ncuts > size - 1) ncuts = size - 1;
    const uint8_t *cuts = data + 1;
    const char *s = (const char *)data + 1 + ncuts;
    size_t n = size - 1 - ncuts;

    size_t longest = 0, cur = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\n' || s[i] == '\r') cur = 0;
        else if (++cur > longest) longest = cur;
    }

    rec whole = { .events = 0 }, split = { .events = 0 };
    buf_init(&whole.log);
    buf_init(&split.log);
    size_t dw, ds;
    run(s, n, NULL, 0, &whole, &dw);
    run(s, n, cuts, ncuts, &split, &ds);
    if (longest <= MAX_EVENT) {
        if (whole.log.len != split.log.len || (whole.log.len && memcmp(whole.log.data, split.log.data, whole.log.len))) {
            fprintf(stderr, "whole: %.*s\nsplit: %.*s\n", (int)whole.log.len, whole.log.data ? whole.log.data : "",
                    (int)split.log.len, split.log.data ? split.log.data : "");
            CHECK(!"split feeding changed the events");
        }
        CHECK(dw == ds);
    }
    buf_free(&whole.log);
    buf_free(&split.log);
    return 0;
}
