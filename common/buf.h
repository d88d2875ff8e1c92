/* buf: a growable byte buffer (always NUL-terminated for convenience). */
#ifndef GW_BUF_H
#define GW_BUF_H

#include <stddef.h>
#include <stdarg.h>
#include <string.h>

typedef struct buf {
    char  *data;
    size_t len;
    size_t cap;
    int    oom;     /* sticky: set once an allocation failed; later appends are no-ops */
} buf_t;

void buf_init(buf_t *b);
void buf_free(buf_t *b);
void buf_reset(buf_t *b);                       /* len = 0, keeps memory */
int  buf_reserve(buf_t *b, size_t extra);       /* 0 ok, -1 out of memory */
/* Growth and the sticky oom flag live out of line; the common append that
 * fits is inline, so a literal's strlen and the copy fold at the call site
 * (the access log, span export and reply headers append dozens of pieces). */
int  buf_append_slow(buf_t *b, const void *p, size_t n);
static inline int buf_append(buf_t *b, const void *p, size_t n)
{
    if (b->oom || b->len + n + 1 > b->cap) return buf_append_slow(b, p, n);
    if (n) memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}
static inline int buf_puts(buf_t *b, const char *s) { return buf_append(b, s, strlen(s)); }
static inline int buf_putc(buf_t *b, char c) { return buf_append(b, &c, 1); }
int  buf_printf(buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int  buf_vprintf(buf_t *b, const char *fmt, va_list ap);
/* Appends s as a JSON string literal, quotes included, escaping as RFC 8259 requires. */
int  buf_json_str(buf_t *b, const char *s, size_t n);
/* Decimal integer / fixed-point with 3 decimals, without printf (hot paths). */
int  buf_put_u64(buf_t *b, unsigned long long v);
int  buf_put_i64(buf_t *b, long long v);
int  buf_put_fixed3(buf_t *b, double v);        /* v >= 0, e.g. 12.345 */
/* The longest prefix of s[0..n) no longer than max bytes that does not cut
 * a UTF-8 sequence in half (for truncating text that must stay valid). */
size_t utf8_prefix(const char *s, size_t n, size_t max);
/* Copies s (NULL: "") into dst[cap] (cap >= 1), cut on a UTF-8 boundary
 * to fit; returns the length copied. Inline: span and usage records copy
 * several short labels per request. */
static inline size_t str_copy_trunc(char *dst, size_t cap, const char *s)
{
    size_t n = s ? strnlen(s, cap) : 0;
    if (n == cap) n = utf8_prefix(s, n, cap - 1);
    if (n) memcpy(dst, s, n);
    dst[n] = '\0';
    return n;
}
/* Lowercase hex of in[0..n): 2n chars, not terminated. Eight bytes at a
 * time in a word (trace and span ids go into every traced request twice). */
void   hex_lower(char *out, const void *in, size_t n);
char *buf_steal(buf_t *b);                      /* caller frees; b is reset to empty */

#endif
