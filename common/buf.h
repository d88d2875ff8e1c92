/* buf: a growable byte buffer (always NUL-terminated for convenience). */
#ifndef GW_BUF_H
#define GW_BUF_H

#include <stddef.h>
#include <stdarg.h>

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
int  buf_append(buf_t *b, const void *p, size_t n);
int  buf_puts(buf_t *b, const char *s);
int  buf_putc(buf_t *b, char c);
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
char *buf_steal(buf_t *b);                      /* caller frees; b is reset to empty */

#endif
