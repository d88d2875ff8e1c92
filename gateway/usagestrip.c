#include "usagestrip.h"

#include <string.h>

void usagestrip_init(usagestrip *s)
{
    buf_init(&s->pending);
    s->done = 0;
}

void usagestrip_free(usagestrip *s) { buf_free(&s->pending); }

static const char *skip_ws(const char *q, const char *end)
{
    while (q < end && (*q == ' ' || *q == '\t' || *q == '\r' || *q == '\n')) q++;
    return q;
}

/* "key" : <open>   (whitespace allowed where JSON allows it) */
static int has_member_opening(const char *p, size_t n, const char *key, size_t klen, char open, int empty_array)
{
    const char *end = p + n;
    for (const char *s = p; (s = memmem(s, (size_t)(end - s), key, klen)); s += klen) {
        const char *q = skip_ws(s + klen, end);
        if (q >= end || *q != ':') continue;
        q = skip_ws(q + 1, end);
        if (q >= end || *q != open) continue;
        if (!empty_array) return 1;
        q = skip_ws(q + 1, end);
        if (q < end && *q == ']') return 1;
    }
    return 0;
}

/* "usage" : {   anywhere, searched from the end on its rare 'g' (every
 * chunk but the last says "usage":null, near its end) */
static int has_usage_object(const char *p, size_t n)
{
    const char *end = p + n;
    for (size_t to = n; to > 0;) {
        const char *g = memrchr(p, 'g', to);
        if (!g) return 0;
        to = (size_t)(g - p);
        if (to < 4 || (size_t)(end - g) < 3 || memcmp(g - 4, "\"usage\"", 7)) continue;
        const char *q = skip_ws(g + 3, end);
        if (q >= end || *q != ':') continue;
        q = skip_ws(q + 1, end);
        if (q < end && *q == '{') return 1;
    }
    return 0;
}

int usagestrip_is_usage_chunk(const char *p, size_t n)
{
    const char *end = p + n, *q = skip_ws(p, end);
    if ((size_t)(end - q) < 5 || memcmp(q, "data:", 5)) return 0;
    return has_usage_object(q, (size_t)(end - q)) &&
           has_member_opening(q, (size_t)(end - q), "\"choices\"", 9, '[', 1);
}

/* End of the first event terminator at or after p: the offset just past the
 * blank line, or 0 if there is none yet. */
static size_t event_end(const char *p, size_t n)
{
    for (const char *nl = p; n > 1 && (nl = memchr(nl, '\n', n - 1 - (size_t)(nl - p)));) {
        size_t i = (size_t)(nl - p);
        if (p[i + 1] == '\n') return i + 2;
        if (p[i + 1] == '\r' && i + 2 < n && p[i + 2] == '\n') return i + 3;
        nl++;
    }
    return 0;
}

/* Emits the complete events of p[0..n) except the usage chunk; returns how
 * many bytes were consumed (the rest is an incomplete event). */
static size_t filter(usagestrip *s, const char *p, size_t n, usagestrip_emit emit, void *ud)
{
    size_t at = 0, flushed = 0;
    while (!s->done && at < n) {
        size_t e = event_end(p + at, n - at);
        if (!e) break;
        if (usagestrip_is_usage_chunk(p + at, e)) {
            if (at > flushed) emit(ud, p + flushed, at - flushed);
            flushed = at + e;
            s->done = 1;
        }
        at += e;
    }
    if (s->done) at = n;  /* the rest passes through */
    if (at > flushed) emit(ud, p + flushed, at - flushed);
    return at;
}

void usagestrip_feed(usagestrip *s, const char *p, size_t n, usagestrip_emit emit, void *ud)
{
    if (s->done) { if (n) emit(ud, p, n); return; }
    if (s->pending.len == 0) {
        size_t used = filter(s, p, n, emit, ud);
        if (used < n && buf_append(&s->pending, p + used, n - used) < 0) {
            s->done = 1;   /* out of memory: never lose client bytes */
            emit(ud, p + used, n - used);
        }
        return;
    }
    if (buf_append(&s->pending, p, n) < 0) {
        s->done = 1;
        emit(ud, s->pending.data, s->pending.len);   /* a failed append leaves len as it was */
        emit(ud, p, n);
        buf_free(&s->pending);
        buf_init(&s->pending);
        return;
    }
    size_t used = filter(s, s->pending.data, s->pending.len, emit, ud);
    size_t left = s->pending.len - used;
    if (left && used) memmove(s->pending.data, s->pending.data + used, left);
    s->pending.len = left;
    if (left > USAGESTRIP_MAX_PENDING) usagestrip_flush(s, emit, ud);
}

void usagestrip_flush(usagestrip *s, usagestrip_emit emit, void *ud)
{
    if (s->pending.len) emit(ud, s->pending.data, s->pending.len);
    s->pending.len = 0;
    s->done = 1;
}
